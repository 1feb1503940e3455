"""A tiny synthetic run (every artifact the evaluation reads) and its ground-truth labels."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from pinlanding.collections import schemas
from pinlanding.collections.artifacts import write_table
from pinlanding.collections.config import load_config
from pinlanding.collections.layout import RunLayout

# id: (title, articleType, subCategory, baseColour, gender, Pattern or None, brand)
CATALOGUE = {
    "1": ("Nike Men Red Tshirt", "Tshirts", "Topwear", "Red", "Men", "Solid", "Nike"),
    "2": ("Puma Men Red Striped Tshirt", "Tshirts", "Topwear", "Red", "Men", "Striped", "Puma"),
    "3": ("Puma Women Navy Tshirt", "Tshirts", "Topwear", "Navy Blue", "Women", "Solid", "Puma"),
    "4": ("Femella Women Red Dress", "Dresses", "Dress", "Red", "Women", None, "Femella"),
    "5": ("Femella Women Blue Dress", "Dresses", "Dress", "Blue", "Women", None, "Femella"),
    "6": ("Nike Men Black Casual Shoes", "Casual Shoes", "Shoes", "Black", "Men", None, "Nike"),
    "7": ("<script>alert(1)</script> Unisex Blue Tshirt 👕", "Tshirts", "Topwear", "Blue", "Unisex", "Solid", "Nike"),
}
QUERIES = ["red tshirt for men", "red t-shirt for men", "blue dress for women", "striped tshirt",
           "black casual shoes for men", "green jumpsuit", "zzz qqq"]


def _attrs(pairs):
    return [{"key": k, "value": v} for k, v in pairs]


def _products(pids_scores):
    return [{"product_id": p, "score": s} for p, s in pids_scores]


FEEDS = [
    # 1 and 2 match, 3 is navy blue: P = 2/3
    ("red-tshirts", "Red T-shirts", [("category", "t-shirt"), ("color", "red")], [("1", .9), ("2", .8), ("3", .7)]),
    # 5 matches, 4 is red, 99 has no labels (left out): P = 1/2, strict 1/3
    ("blue-dresses", "Blue dresses", [("color", "blue"), ("category", "dresses")], [("5", .9), ("4", .8), ("99", .7)]),
    # no label family for style
    ("boho", "Boho", [("style", "boho")], [("4", .9), ("5", .8), ("7", .7)]),
    ("empty", "Nothing", [("category", "tshirt")], []),
    # 2 matches, 1 is solid, 4 has no pattern label: P = 1/2
    ("striped", "Stripes", [("pattern", "stripes")], [("2", .9), ("1", .8), ("4", .7)]),
]


@pytest.fixture()
def labels_path(tmp_path: Path) -> Path:
    path = tmp_path / "labels" / "styles.jsonl.gz"
    path.parent.mkdir()
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for pid, (title, art, sub, colour, gender, pattern, brand) in CATALOGUE.items():
            rec = {"id": int(pid), "productDisplayName": title, "articleType": art, "subCategory": sub,
                   "masterCategory": "Footwear" if sub == "Shoes" else "Apparel", "baseColour": colour,
                   "gender": gender, "season": "Summer", "usage": "Casual", "brandName": brand,
                   "ageGroup": "Adults-" + gender, "articleAttributes": {"Pattern": pattern} if pattern else {}}
            f.write(json.dumps(rec) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"articleType": "Tshirts"}) + "\n")
    return path


@pytest.fixture()
def queries_path(tmp_path: Path) -> Path:
    path = tmp_path / "queries.tsv"
    lines = ["image\tEnglish query\tGerman query"] + [f"http://x/{i}.jpg\t{q}\tde" for i, q in enumerate(QUERIES)]
    path.write_text("\n".join(lines + ["only-one-column", "http://x\t\tleer"]) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def run(tmp_path: Path) -> RunLayout:
    layout = RunLayout(tmp_path / "run")
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i, (pid, (title, art, *_)) in enumerate(CATALOGUE.items()):
        img = images / f"{pid}.jpg"
        Image.new("RGB", (6, 8), (40 * i, 20, 20)).save(img)
        rows.append({"product_id": pid, "title": title, "description": "", "merchant_tags": [art],
                     "brand": None, "price": 10.0, "currency": "INR", "image_path": str(img),
                     "content_hash": pid, "source_row": i})
    write_table(pa.Table.from_pylist(rows, schemas.PRODUCTS), layout.products, schemas.PRODUCTS)
    attr_rows = [("1", "category", "tshirt"), ("1", "color", "red"), ("2", "category", "tshirt"),
                 ("2", "color", "red"), ("2", "pattern", "stripes"), ("3", "category", "tshirt"),
                 ("3", "color", "red"), ("4", "category", "dresses"), ("4", "color", "red"),
                 ("5", "category", "dresses"), ("5", "color", "blue"), ("6", "category", "shoes"),
                 ("7", "category", "tshirt"), ("7", "style", "boho")]
    table = pa.Table.from_pylist([{"product_id": p, "key": k, "value": v, "source": "rules", "confidence": 0.5 + i / 100,
                                   "raw": None} for i, (p, k, v) in enumerate(attr_rows)], schemas.ATTRIBUTES)
    write_table(table, layout.attributes, schemas.ATTRIBUTES)
    write_table(pa.Table.from_pylist([{"product_id": p, "key": k, "value": v, "confidence": 0.5 + i / 100,
                                       "source": "encoder"} for i, (p, k, v) in enumerate(attr_rows)],
                                     schemas.ASSIGNMENTS), layout.assignments, schemas.ASSIGNMENTS)
    vocab = [("category", "tshirt", ["t-shirt", "tee"]), ("category", "dresses", []), ("category", "shoes", []),
             ("color", "red", []), ("color", "blue", []), ("pattern", "stripes", []), ("style", "boho", []),
             ("brand", "Femella", []), ("color", "<b>bold</b>", [])]
    write_table(pa.Table.from_pylist([{"key": k, "value": v, "variants": var, "product_count": 2, "status": "approved",
                                       "judge_score": 1.0, "provenance": "test"} for k, v, var in vocab], schemas.VOCAB),
                layout.vocabulary, schemas.VOCAB)
    feeds = [{"topic_id": slug, "slug": slug, "title": title, "query": title, "attributes": _attrs(a),
              "products": _products(p), "judge_score": 1.0, "size": len(p)} for slug, title, a, p in FEEDS]
    write_table(pa.Table.from_pylist(feeds, schemas.FEEDS), layout.feeds, schemas.FEEDS)
    topics = [{"topic_id": f["slug"], "slug": f["slug"], "title": f["title"], "query": f["query"],
               "attributes": f["attributes"], "support": f["size"], "judge_score": 1.0, "status": "kept",
               "reason": None} for f in feeds]
    write_table(pa.Table.from_pylist(topics, schemas.TOPICS), layout.topics, schemas.TOPICS)
    return layout


@pytest.fixture()
def cfg(queries_path: Path):
    return load_config(None, [f"evaluation.queries={queries_path}", "feeds.min_feed_size=1",
                              "evaluation.sample_collections=4"])
