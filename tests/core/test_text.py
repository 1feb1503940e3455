"""The shared text forms: stored catalogue text, model text and key spelling differ on purpose."""
from pinlanding.collections.text import key_form, one_line, plain_text, singular, split_words


def test_plain_text_keeps_lines_and_compatibility_forms() -> None:
    assert plain_text("<p>Ｔｅｅ</p><br>ﬁt &amp;amp; \x07 flare") == "Ｔｅｅ\nﬁt & flare"
    assert plain_text("a\u200bb \u202eevil") == "ab evil"  # zero-width and bidi characters dropped


def test_one_line_folds_what_plain_text_keeps() -> None:
    assert one_line("<p>Ｔｅｅ</p><br>ﬁt &amp;amp; \x07 flare") == "Tee fit & flare"
    assert one_line(None) == "" and one_line(12) == "12"


def test_key_form_spells_without_synonyms() -> None:
    assert key_form(" Sleeve Length") == "sleeve_length"
    assert key_form("Size/Fit") == key_form("size - fit") == "size_fit"


def test_singular_keeps_words_that_only_end_in_s() -> None:
    assert [singular(w) for w in ("dresses", "ladies", "boxes", "tennis", "levis", "glass")] == \
        ["dress", "lady", "box", "tennis", "levis", "glass"]


def test_split_words_of_any_script() -> None:
    assert split_words("U.S. Polo Assn. T-Shirts") == ["u", "s", "polo", "assn", "t", "shirts"]
    assert split_words("Café платье_2", fold_plurals=True) == ["café", "платье", "2"]
    assert split_words("Dresses & Tops", fold_plurals=True) == ["dress", "top"]
