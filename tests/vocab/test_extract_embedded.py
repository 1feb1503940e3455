"""The embedded backend: text rules, image colours, catalogue-validated categories, neighbour votes."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from extract_fixtures import product_image, products

from pinlanding.collections.schemas import ATTRIBUTES
from pinlanding.vocab.extract import explode
from pinlanding.vocab.extractors import RESULT_SCHEMA
from pinlanding.vocab.extractors.base import refine_table
from pinlanding.feeds.config import FeedsConfig
from pinlanding.vocab.extractors.embedded import EmbeddedExtractor, text_attributes
from pinlanding.vocab.extractors.pixels import color_shares
from pinlanding.vocab.extractors.prepare import prepare_batch
from pinlanding.collections.text import singular
from pinlanding.vocab.extractors.rules import phrase_key, type_candidates


def prepared(rows: list[dict]) -> dict:
    return prepare_batch(products(rows).to_pydict(), image_mode="pixels")


def row_attrs(row: dict) -> dict[str, set[str]]:
    batch = prepared([row])
    attrs, _ = text_attributes({k: v[0] for k, v in batch.items()})
    out: dict[str, set[str]] = {}
    for a in attrs:
        out.setdefault(a.key, set()).add(a.value)
    return out


def test_text_rules_read_title_tags_description_and_skip_the_brand(tmp_path: Path) -> None:
    got = row_attrs({"title": "Red Tape Men Navy Striped Slim Fit Cotton Shirt", "brand": "Red Tape",
                     "description": "Navy shirt, made of 60% cotton and 40% polyester. Short sleeves.",
                     "merchant_tags": ["Formal Wear", "Winterwear"],
                     "image_path": product_image(tmp_path / "a.jpg", (25, 30, 70))})
    assert got["color"] == {"navy blue"}  # "red" is the brand's word, not the shirt's colour
    assert got["gender"] == {"men"} and got["pattern"] == {"striped"} and got["fit"] == {"slim"}
    assert {"cotton", "polyester", "blended"} <= got["material"]
    assert got["occasion"] == {"formal"} and got["season"] == {"winter"} and got["sleeve"] == {"short"}
    assert got["brand"] == {"red tape"}


def test_care_instructions_in_the_description_add_no_pattern(tmp_path: Path) -> None:
    got = row_attrs({"title": "Acme Women White T-shirt", "brand": "Acme",
                     "description": "White t-shirt made of cotton\nWash care\nMachine wash cold\n"
                                    "Do not use iron on print/embroidery\nEmbroidered brand name on the chest",
                     "merchant_tags": [], "image_path": product_image(tmp_path / "c.jpg", (240, 240, 240))})
    assert "pattern" not in got and got["material"] == {"cotton"}
    got = row_attrs({"title": "Acme Women White T-shirt", "brand": "Acme",
                     "description": "White t-shirt with floral embroidery\nMachine wash cold",
                     "merchant_tags": [], "image_path": product_image(tmp_path / "d.jpg", (240, 240, 240))})
    assert got["pattern"] == {"embroidered", "floral"}


def test_a_material_stated_as_the_whole_fabric_is_surer_than_a_mix(tmp_path: Path) -> None:
    def material(description: str) -> dict[str, float]:
        batch = prepared([{"title": "Acme Men Shirt", "brand": "Acme", "description": description,
                           "merchant_tags": [], "image_path": product_image(tmp_path / "m.jpg", (25, 30, 70))}])
        attrs, _ = text_attributes({k: v[0] for k, v in batch.items()})
        return {a.value: a.confidence for a in attrs if a.key == "material"}

    pure, named, mix = material("Fabric: 100% cotton"), material("Made of cotton"), material("60% cotton, 40% linen")
    assert pure["cotton"] > named["cotton"] > mix["cotton"]
    assert mix["blended"] < named["cotton"]


def test_hostile_and_empty_records_do_not_crash(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    rows = [{"title": "<script>alert('x')</script> 🔥🔥 Women Pink Dress 💃", "description": None, "brand": None,
             "image_path": str(bad)},
            {"title": "", "description": "", "image_path": None, "merchant_tags": None}]
    batch = prepared(rows)
    assert batch["image_error"][0].startswith("UnidentifiedImageError") and batch["image_error"][1] == "no image"
    out = EmbeddedExtractor(use_embeddings=False)(batch)
    attrs = [json.loads(a) for a in out["attributes"]]
    assert ["gender", "women"] in [a[:2] for a in attrs[0]] and ["color", "pink"] in [a[:2] for a in attrs[0]]
    assert all("<" not in a[1] for a in attrs[0]) and attrs[1] == []
    assert list(out["error_kind"]) == ["", ""] and out["raw"][0].startswith("image:")


@pytest.mark.parametrize("rgb, background, name", [
    ((200, 30, 35), (255, 255, 255), "red"), ((25, 30, 70), (255, 255, 255), "navy blue"),
    ((250, 250, 250), (255, 255, 255), "white"), ((240, 120, 30), (10, 10, 10), "orange"),
])
def test_image_colour_of_the_product_region(tmp_path: Path, rgb, background, name: str) -> None:
    with Image.open(product_image(tmp_path / "x.jpg", rgb, background)) as img:
        shares = color_shares(img)
    assert shares["colors"][0][0] == name and shares["colors"][0][1] > 0.6


def test_title_phrases_and_their_keys() -> None:
    assert type_candidates("men navy slim fit casual shoes uk 8".split()) == ["shoes", "casual shoes"]
    assert type_candidates("women red".split()) == [] and type_candidates([]) == []
    assert phrase_key("T-Shirts") == phrase_key("tshirt") == "tshirt"
    assert [singular(w) for w in ("dresses", "tops", "watches", "jeans", "glass", "accessories")] == \
        ["dress", "top", "watch", "jean", "glass", "accessory"]


def _refine(ex: EmbeddedExtractor, rows: list[dict]) -> dict[str, dict[str, set[str]]]:
    prods = products(rows)
    batch = ex(prepare_batch(prods.to_pydict(), image_mode="none"))
    results = pa.table({k: list(batch[k]) for k in RESULT_SCHEMA.names}, schema=RESULT_SCHEMA)
    table = refine_table(ex.refiner(), results, explode(results))
    assert table.schema == ATTRIBUTES
    out: dict[str, dict[str, set[str]]] = {}
    for r in table.to_pylist():
        out.setdefault(r["product_id"], {}).setdefault(r["key"], set()).add(r["value"])
    return out


def test_categories_are_validated_by_catalogue_frequency_on_an_unseen_catalogue() -> None:
    """Open vocabulary: a furniture catalogue, no fashion word involved."""
    woods = ["Oak", "Teak", "Pine"]
    rows = [{"product_id": f"t{i}", "title": f"Nordhem {woods[i % 3]} Dining Tables {i}x"} for i in range(6)]
    rows += [{"product_id": f"c{i}", "title": f"Nordhem {woods[i % 3]} Lounge Chair"} for i in range(6)]
    rows += [{"product_id": "rare", "title": "Nordhem Oak Bookcase"}]
    got = _refine(EmbeddedExtractor(use_embeddings=False, min_support=5), rows)
    assert got["t0"]["category"] == {"dining tables", "tables"}
    assert got["c0"]["category"] == {"lounge chair", "chair"}
    assert "category" not in got.get("rare", {})  # one product's phrase is not a category


@pytest.mark.slow
def test_neighbour_votes_fill_category_and_gender_from_minilm() -> None:
    rows = [{"product_id": f"s{i}", "title": f"Acme Men {c}-Line Running Sneakers"}
            for i, c in enumerate("ABCDEFGHIJKL")]
    rows += [{"product_id": f"d{i}", "title": f"Acme Women {c}-Line Floral Summer Dress"}
             for i, c in enumerate("ABCDEFGHIJKL")]
    rows += [{"product_id": "q", "title": "Acme Men Running Sneakers Zorblax"}]  # unknown last word, no match
    got = _refine(EmbeddedExtractor(min_support=5, knn_k=5), rows)
    assert got["s0"]["category"] >= {"running sneakers"}
    assert got["q"]["category"] == {"running sneakers"}
    # a product without a gender word takes its neighbours' gender
    rows[-1] = {"product_id": "q", "title": "Acme Floral Summer Dress Zorblax"}
    assert _refine(EmbeddedExtractor(min_support=5, knn_k=5), rows)["q"]["gender"] == {"women"}


def test_pixel_colour_only_corroborates_a_colour_the_text_names(tmp_path: Path) -> None:
    red = product_image(tmp_path / "red.jpg", (210, 30, 30))
    assert "color" not in row_attrs({"title": "Acme Men Shirt", "image_path": red})  # pixels alone name nothing
    batch = prepared([{"title": "Acme Men Red Shirt", "image_path": red},
                      {"title": "Acme Men Red Shirt", "image_path": None}])
    seen, unseen = (text_attributes({k: v[i] for k, v in batch.items()})[0] for i in (0, 1))
    colour = {a.value: a for a in seen if a.key == "color"}
    assert set(colour) == {"red"} and "image" in colour["red"].source
    assert colour["red"].confidence > next(a.confidence for a in unseen if a.key == "color")


def test_a_material_only_the_description_names_needs_confirmation_to_be_published(tmp_path: Path) -> None:
    """Description evidence of a material stays below the feeds' confidence floor; the title's reaches it."""
    floor = FeedsConfig().min_confidence
    for title, want_published in (("Men Black Sneakers", False), ("Men Black Canvas Sneakers", True)):
        batch = prepared([{"title": title, "brand": "", "description": "Upper made of canvas, rubber outsole.",
                           "image_path": product_image(tmp_path / "a.jpg", (10, 10, 10))}])
        attrs, _ = text_attributes({k: v[0] for k, v in batch.items()})
        material = {a.value: a.confidence for a in attrs if a.key == "material"}
        assert set(material) == {"canvas"}  # "rubber outsole" is the sole's material
        assert (material["canvas"] >= floor) is want_published


def test_a_sleeve_or_neckline_only_the_description_names_ranks_but_is_not_published_alone(tmp_path: Path) -> None:
    """Description evidence of a part sits just below the feeds' floor, above the prose evidence of a colour;
    the title's reaches the floor."""
    floor = FeedsConfig().min_confidence
    image = product_image(tmp_path / "a.jpg", (10, 10, 10))
    text = "Blue T-shirt with a round neck and short sleeves, made of cotton."
    for title, want_published in (("Acme Men T-shirt", False), ("Acme Men Round Neck Short Sleeve T-shirt", True)):
        batch = prepared([{"title": title, "brand": "", "description": text, "image_path": image}])
        attrs, _ = text_attributes({k: v[0] for k, v in batch.items()})
        got = {(a.key, a.value): a.confidence for a in attrs}
        sleeve, neck = got[("sleeve", "short")], got[("neck", "round")]
        assert (sleeve >= floor) is want_published and (neck >= floor) is want_published
        if not want_published:
            assert min(sleeve, neck) > got[("color", "blue")]  # a description's colour word is weaker evidence
