"""The vocabulary-to-label mapping: normalisation, synonyms, kind-of relations, unmatched values."""
from pinlanding.evaluation import mapping as mp


def test_normalize_and_singular():
    assert mp.normalize("T-Shirts") == "t shirt"
    assert mp.normalize("Dresses") == "dress"
    assert mp.normalize("Men's  Watches") == "men watch"
    assert mp.normalize("Accessories") == "accessory"
    assert mp.normalize("Scarves") == "scarf"
    assert mp.normalize("Sleeveless") == "sleeveless"
    assert mp.normalize("") == ""


def test_canonical_synonyms_on_both_sides():
    assert mp.canonical("category", "tee") == mp.canonical("category", "Tshirts") == "tshirt"
    assert mp.canonical("category", "Sports Shoes") == mp.canonical("category", "running shoes")
    assert mp.canonical("colour", "gray") == "grey"
    assert mp.canonical("colour", "Navy") == mp.canonical("colour", "Navy Blue") == "navy blue"
    assert mp.canonical("pattern", "plaid") == mp.canonical("pattern", "Checked") == "checked"
    assert mp.canonical("sleeve", "half sleeves") == mp.canonical("sleeve", "Short Sleeves")
    assert mp.canonical("brand", "ADIDAS") == "adidas"  # brands are not singularised
    assert mp.canonical("brand", "U.S. Polo Assn.") == mp.canonical("brand", "us polo assn")


def test_kind_of_relations_go_one_way():
    assert mp.accepts("colour", "blue", "navy blue")
    assert not mp.accepts("colour", "navy blue", "blue")
    assert mp.accepts("colour", "grey", "grey melange")
    assert mp.accepts("gender", "men", "unisex") and not mp.accepts("gender", "unisex", "men")
    assert mp.accepts("category", "shoe", "casual shoe")
    assert not mp.accepts("category", "shirt", "tshirt")
    assert mp.accepted_values("pattern", "printed", {"floral", "solid", "printed"}) == {"floral", "printed"}
    collar = mp.canonical("neck", "Collar")  # a bare collar: any kind of collar, not a neckline without one
    assert mp.accepts("neck", collar, mp.canonical("neck", "Spread Collar"))
    assert mp.accepts("neck", collar, mp.canonical("neck", "Polo Collar"))
    assert not mp.accepts("neck", collar, mp.canonical("neck", "Round Neck"))
    assert not mp.accepts("neck", mp.canonical("neck", "Polo Collar"), collar)
    shorts = mp.canonical("category", "Shorts")  # head-final: lounge shorts are shorts, not the reverse
    assert mp.accepts("category", shorts, mp.canonical("category", "Lounge Shorts"))
    assert not mp.accepts("category", mp.canonical("category", "Lounge Shorts"), shorts)
    assert not mp.accepts("colour", mp.canonical("colour", "gold"), mp.canonical("colour", "rose gold"))


def test_keys_families_and_rules():
    assert mp.family_of("color") == mp.family_of("Colour") == "colour"
    assert mp.family_of("fabric") == "material"
    assert mp.family_of("style") is None
    assert mp.attr_key("style", "Boho Chic") == ("style", "boho chic")
    assert mp.attr_key("color", "Gray") == ("colour", "grey")
    assert mp.how_matched("colour", "gray", "grey", {"grey"}) == "synonym"
    assert mp.how_matched("colour", "Grey", "grey", {"grey"}) == "exact"
    assert mp.how_matched("colour", "blue", "blue", {"navy blue"}) == "narrower"
    assert mp.how_matched("colour", "zzz", "zzz", set()) == "unmatched"


def test_hostile_values_do_not_crash():
    assert mp.canonical("category", "<script>alert(1)</script> 👗") == "script alert 1 script"  # emoji are not words
    assert mp.canonical("colour", None) == ""


def test_bare_sleeve_lengths_and_neck_shapes_name_their_family_value():
    assert mp.canonical("sleeve", "long") == mp.canonical("sleeve", "Long Sleeves") == "long sleeve"
    assert mp.canonical("sleeve", "three-quarter") == "three quarter sleeve"
    assert mp.canonical("neck", "round") == mp.canonical("neck", "Round Neck")
    assert mp.canonical("colour", "long") == "long"  # only within the family
