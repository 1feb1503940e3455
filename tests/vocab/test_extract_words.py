"""Word-table rules of the embedded extractor that keep values shopping concepts (issue 15)."""
from __future__ import annotations

from pinlanding.vocab.extractors.rules import (is_blend, is_care_instruction, is_disclaimer, is_styling_advice, match,
                                              material_mentions, type_candidates, without_boilerplate)


def test_x_with_y_names_x() -> None:
    assert type_candidates("women pink churidar kurta with dupatta".split()) == ["kurta", "churidar kurta"]
    assert type_candidates("men white dial watch with leather strap".split()) == ["watch", "dial watch"]


def test_a_trailing_retailer_name_is_no_type() -> None:
    assert type_candidates("women blue knee length skirt only at macy's".split())[0] == "skirt"


def test_audience_words_are_gender_not_a_type() -> None:
    assert type_candidates("acme kidswear".split()) == []
    assert match("gender", "acme teen kidswear") == [("kids", "kidswear")]


def test_a_material_before_a_part_noun_is_the_part_s() -> None:
    text = "white shoes in synthetic leather with nylon mesh upper, rubber outsole and metal buckle"
    assert [v for v, _ in match("material", text)] == ["synthetic leather", "nylon", "mesh"]
    assert [v for v, _ in match("material", "flip flops with rubber upper")] == ["rubber"]


def test_a_fibre_mix_is_named_for_its_dominant_fibre() -> None:
    assert not is_blend("Material and Care\n95% cotton and 5% spandex")
    assert is_blend("60% cotton, 40% polyester")
    assert [v for v, _ in material_mentions("Material and Care\n95% cotton and 5% spandex\nMachine wash")] == ["cotton"]


def test_blend_names_a_fabric_only_in_a_fabric_phrase() -> None:
    assert is_blend("Blue check shirt made of cotton-polyester blend fabric, has a tipped collar")
    assert is_blend("Material and Care\nBlended fabric\nHand wash")
    assert is_blend("Fabric: Blended")
    assert not is_blend("These bags are a perfect blend of comfort and style with the leather strap")
    assert not is_blend("Material and Care\nCotton blend\nMachine wash")  # one named fibre: cotton
    assert not is_blend("Blended cotton\nHand wash")


def test_watch_displays_are_features_and_praise_is_no_style() -> None:
    assert match("feature", "titan analog chronograph watch") == [("analog", "analog"), ("chronograph", "chronograph")]
    assert match("style", "a classic analog watch") == []
    assert match("occasion", "a classic analog watch") == []


def test_a_pattern_before_a_detail_is_the_detail_s() -> None:
    text = "black solid t-shirt with printed logo on the chest, embroidered label at the hem and lace-up sides"
    assert match("pattern", text) == [("solid", "solid")]
    assert match("pattern", "lace up shoes with a printed lining") == []  # a closure; the lining's print
    assert match("pattern", "blue printed t-shirt with lace trims") == [("printed", "printed")]
    assert match("pattern", "white lace top") == [("lace", "lace")]
    prose = "striped shirt, brand name embroidered on the chest and logo printed on the back"
    assert match("pattern", prose, prose=True) == [("striped", "striped")]  # after a detail, in running text
    assert match("pattern", "logo printed t-shirt") == [("printed", "printed")]  # a title lists attributes
    trims = "solid polo with contrast stripes, stripes on the sleeves and collar, print on the left cuff"
    assert match("pattern", trims, prose=True) == [("solid", "solid")]
    assert match("pattern", "graphic print on the front with a pocket", prose=True) == [("printed", "graphic")]
    assert match("pattern", "check out the matching shoes", prose=True) == []  # a verb


def test_care_instructions_disclaimers_and_styling_advice_name_no_attribute() -> None:
    for advice in ("Machine wash cold water", "Do not use iron on print/embroidery", "Dry clean only",
                   "Mild iron, and do not iron on print/embellishment", "Turn inside out before drying", "Wash care",
                   "Cold water machine wash", "Line dry in shade", "Warm iron, but do not iron directly on print"):
        assert is_care_instruction(advice), advice
    assert is_styling_advice("Team this with blue jeans") and is_styling_advice("Pair it up with white sneakers")
    assert not is_styling_advice("Style meets comfort with this shirt") and not is_styling_advice("A tee with pockets")
    assert is_disclaimer("Colours may vary slightly from the image") and not is_disclaimer("Colours vary by size")
    for prose in ("Use it for parties", "Soft cotton tee, easy to wash", "Machine-knit striped sweater",
                  "Regular fit", "Dry-fit polyester jersey", "Light wash slim fit jeans with five pockets"):
        assert not is_care_instruction(prose), prose
    text = ("Red printed top made of cotton\nWash care\nDo not bleach. Do not iron on embroidery. Team it with jeans.\n"
            "The product delivered may vary in colour and print from the display. Pair it with blue denims.")
    assert without_boilerplate(text) == "Red printed top made of cotton"
    bullets = "\u2022 Machine wash cold \u2022 100% cotton \u25aa Do not bleach \u00b7 Regular fit"
    assert without_boilerplate(bullets) == "100% cotton\nRegular fit"  # a feed's one-line list


def test_a_colour_that_is_a_noun_needs_a_colour_word_in_prose() -> None:
    assert match("color", "moisturises the skin; a rose motif on white", prose=True) == [("white", "white")]
    assert match("color", "a skin-coloured bra", prose=True) == [("skin", "skin")]
    assert match("color", "skin bra") == [("skin", "skin")]  # a title lists attributes
