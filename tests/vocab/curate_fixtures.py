"""Tiny run folders for the vocabulary, topics and review tests (built in the test, never shipped data)."""
from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
from PIL import Image

from testlib import Run

from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.parts import is_parted, part_names, read_part, write_parts
from pinlanding.collections.schemas import ASSIGNMENTS, ATTRIBUTES, PRODUCTS
from pinlanding.vocab.topics import run_topics

HOSTILE = ["", "   ", "x" * 500, "<script>alert(1)</script>", "🙂🙂", "&lt;b&gt;", "\x00\x07"]

QUERIES = [
    "black t-shirt for men", "black tshirt for men", "white t-shirt for women", "red dress for women",
    "black dress for women", "navy blue dress", "navy blue t-shirt for men", "red t-shirt", "black shoes for men",
    "black sports shoes", "white sports shoes for men", "red long dress for women", "black party dress",
    "blue jeans for men", "black jeans", "cotton t-shirt", "striped shirt for men", "white shirt for men",
]


def _image(path: Path, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (60, 80), (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)).save(path, format="JPEG")
    return str(path)


def product_rows(root: Path, ids: Iterable[str], titles: dict[str, str] | None = None) -> pa.Table:
    rows = []
    for i, pid in enumerate(ids):
        row = {"product_id": pid, "title": (titles or {}).get(pid, f"Item {pid}"), "description": None,
               "merchant_tags": [], "brand": "Acme", "price": 999.0, "currency": "INR",
               "image_path": _image(root / "images" / f"{i}.jpg", i), "source_row": i}
        row["content_hash"] = hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=PRODUCTS)


def write_run(root: Path, attributes: list[tuple[str, str, str]], n_products: int,
              titles: dict[str, str] | None = None) -> RunLayout:
    """A run folder with ``n_products`` products (ids p0..) and the given raw (product, key, value) rows."""
    layout = RunLayout(root)
    write_table(product_rows(root, [f"p{i}" for i in range(n_products)], titles), layout.products, PRODUCTS)
    write_attributes(layout, attributes)
    return layout


def write_attributes(layout: RunLayout, attributes: list[tuple[str, str, str]]) -> None:
    rows = [{"product_id": p, "key": k, "value": v, "source": "title", "confidence": 0.9, "raw": v}
            for p, k, v in attributes]
    write_table(pa.Table.from_pylist(rows, schema=ATTRIBUTES), layout.attributes, ATTRIBUTES)


def range_adder(rows: list[tuple[str, str, str]]):
    """An ``add(first, last, key, value)`` that appends (``p{i}``, key, value) for i in first..last-1 to ``rows``."""
    def add(first: int, last: int, key: str, value: str) -> None:
        rows.extend((f"p{i}", key, value) for i in range(first, last))
    return add


def tiny_attributes() -> list[tuple[str, str, str]]:
    """60 products: colour/category spellings to merge, values that must stay apart, rare and hostile values."""
    rows: list[tuple[str, str, str]] = []
    add = range_adder(rows)

    add(0, 15, "color", "Black"); add(15, 20, "color", "black"); add(20, 30, "color", "Navy Blue")
    add(30, 32, "color", "Navy-Blue"); add(32, 42, "color", "Blue"); add(42, 52, "color", "Light Blue")
    add(52, 60, "color", "Red"); add(59, 60, "color", "Lavender Blush")
    add(0, 12, "category", "T-Shirt"); add(12, 20, "category", "Tshirts"); add(20, 22, "category", "tshirt")
    add(22, 37, "category", "Dress"); add(37, 40, "category", "Dresses"); add(40, 50, "category", "Sports Shoes")
    add(50, 51, "category", "Sport Shoes"); add(51, 59, "category", "Shoes"); add(59, 60, "category", "Kaftan")
    add(0, 30, "gender", "Men"); add(30, 60, "gender", "Women")
    add(0, 6, "material", "कपास"); add(6, 10, "material", "Cotton 🌿")
    for i, v in enumerate(HOSTILE):
        rows.append((f"p{i}", "pattern", v))
    rows.append(("p1", "", "orphan"))
    return rows


def write_queries(path: Path, queries: list[str] = QUERIES) -> Path:
    lines = ["image\tEnglish query\tGerman query"] + [f"http://x/{i}.jpg\t{q}\tx" for i, q in enumerate(queries)]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"http://x/bad.jpg\tbad \xca bytes\tx\n")
    return path


def context(layout: RunLayout, queries: Path, **overrides: Any) -> Run:
    """A config for tiny data on ``layout``: floors of 3 products, the given shopper queries file.

    The config is built from the models' defaults plus these settings and ``overrides`` (like
    ``topics.min_support``), so these tests do not depend on conf/default.yaml.
    """
    sets = {"vocab.min_product_share": 0.05, "vocab.min_products": 3, "topics.min_support": 3,
            "vocab.judge.queries": str(queries), **overrides}
    tree: dict[str, Any] = {}
    for dotted, value in sets.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return Run(PipelineConfig.model_validate(tree), layout)


# --- the real catalogue ---------------------------------------------------------------------------

COLORS = ["navy blue", "off white", "black", "white", "blue", "red", "green", "grey", "pink", "purple", "yellow",
          "brown", "beige", "maroon", "orange", "navy", "cream", "gold", "silver", "olive", "teal", "multi"]
GENDERS = {"men": "Men", "women": "Women", "boys": "Boys", "girls": "Girls", "unisex": "Unisex", "kids": "Kids"}


def real_run(root: Path, myntra: Path, limit: int) -> RunLayout:
    """The first ``limit`` real products with a simple title extraction (gender, colour, product noun, brand).

    It reads only input fields (title, brand); real titles bring real spelling variety ("Tshirts", "T-shirt").
    """
    titles, attrs = {}, []
    with gzip.open(myntra / "styles.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= limit:
                break
            rec = json.loads(line)
            pid, title = f"p{i}", str(rec.get("productDisplayName") or "")
            titles[pid] = title
            low = title.lower()
            gender = next((g for w, g in GENDERS.items() if re.search(rf"\b{w}\b", low)), None)
            if gender:
                attrs.append((pid, "gender", gender))
            hit = min(((m.start(), -len(c), m.end()) for c in COLORS for m in [re.search(rf"\b{c}\b", low)] if m),
                      default=None)
            if hit:
                attrs.append((pid, "color", title[hit[0]:hit[2]]))
                tail = title[hit[2]:].strip()
            else:
                tail = " ".join(title.split()[-1:])
            if tail:
                attrs.append((pid, "category", tail))
            if rec.get("brandName"):
                attrs.append((pid, "brand", str(rec["brandName"])))
    return write_run(root, attrs, len(titles), titles)


def _as_graph(curated: pa.Table) -> pa.Table:
    rows = curated.select(["product_id", "key", "value", "confidence"])
    return rows.append_column("source", pa.array(["extraction"] * rows.num_rows, pa.string())).cast(ASSIGNMENTS)


def write_graph(layout: RunLayout) -> None:
    """The curated attributes as the attribute graph: what the assign stage writes when the encoder adds and
    contradicts nothing (the graph is what topics count; these tests train no encoder)."""
    if is_parted(layout.curated_attributes):
        write_parts(layout.assignments, {n: _as_graph(read_part(layout.curated_attributes, n, ATTRIBUTES))
                                         for n in part_names(layout.curated_attributes)}, ASSIGNMENTS)
    else:
        write_table(_as_graph(read_table(layout.curated_attributes, ATTRIBUTES)), layout.assignments, ASSIGNMENTS)


def topics_over_curated(ctx: Run) -> dict[str, Any]:
    """``run_topics`` over the curated attributes as the attribute graph (:func:`write_graph`)."""
    write_graph(ctx.layout)
    return call_stage(run_topics, *ctx)
