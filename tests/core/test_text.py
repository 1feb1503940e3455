"""The shared text forms: stored catalogue text, model text and key spelling differ on purpose."""
import random
import unicodedata

from pinlanding.collections import text
from pinlanding.collections.text import key_form, one_line, plain_text, singular, split_words


def test_plain_text_keeps_lines_and_compatibility_forms() -> None:
    assert plain_text("<p>Ｔｅｅ</p><br>ﬁt &amp;amp; \x07 flare") == "Ｔｅｅ\nﬁt & flare"
    assert plain_text("a\u200bb \u202eevil") == "ab evil"  # zero-width and bidi characters dropped


def test_one_line_folds_what_plain_text_keeps() -> None:
    assert one_line("<p>Ｔｅｅ</p><br>ﬁt &amp;amp; \x07 flare") == "Tee fit & flare"
    assert one_line(None) == "" and one_line(12) == "12"


def _one_line_in_full(value: str) -> str:
    """``one_line`` without its ASCII fast path: every step of the definition."""
    folded = text._LOOSE_TAG.sub(" ", unicodedata.normalize("NFKC", plain_text(value)))
    return text._WHITESPACE.sub(" ", folded).strip()


def test_one_line_fast_path_for_plain_ascii_equals_the_full_steps() -> None:
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(128) if chr(c) not in "<&"]
    weights = [20 if chr(c).isalnum() else 3 for c in range(128) if chr(c) not in "<&"]
    samples = ["", " ", "\r\n", "a\x1cb", "a\x7fb", " \t Men  Blue\r\n\nShirt \x0b", "Height-5'8\"; Chest-33\""]
    samples += ["".join(rng.choices(alphabet, weights, k=rng.randint(1, 80))) for _ in range(20_000)]
    for value in samples:
        assert one_line(value) == _one_line_in_full(value), repr(value)
    assert one_line("a \x00\x1f b\n\tc") == "a b c"


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
