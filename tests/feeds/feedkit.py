"""Builders of the feeds tests' tiny synthetic inputs (imported by tests as ``feedkit``)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from testlib import Run

from pinlanding.collections.artifacts import write_table
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.schemas import ASSIGNMENTS, PRODUCTS, TOPICS

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
HOSTILE = '<script>alert("x")</script> & "quotes" \u2728'

COLOURS = ["red", "blue", "black"]
TYPES = ["dress", "shirt", "shoes"]


def synthetic_products(root: Path, n: int = 36) -> pa.Table:
    """n products cycling colours x types x genders, with tiny real JPEGs; product 0 has hostile text."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour, kind, gender = COLOURS[i % 3], TYPES[(i // 3) % 3], ("women", "men")[(i // 9) % 2]
        path = images / f"{i}.jpg"
        Image.new("RGB", (6, 8), (40 * (i % 6), 80, 120)).save(path)
        title = HOSTILE if i == 0 else f"{gender.title()} {colour.title()} {kind.title()} {i}"
        rows.append({"product_id": f"p{i:03d}", "title": title, "description": "desc", "merchant_tags": ["tag"],
                     "brand": "<b>Brand</b>" if i == 0 else "Acme", "price": 100.0 + i, "currency": "INR",
                     "image_path": str(path), "content_hash": hashlib.sha256(title.encode()).hexdigest(),
                     "source_row": i})
    return pa.Table.from_pylist(rows, schema=PRODUCTS)


def synthetic_assignments(products: pa.Table) -> pa.Table:
    rows = []
    for i, pid in enumerate(products["product_id"].to_pylist()):
        colour, kind, gender = COLOURS[i % 3], TYPES[(i // 3) % 3], ("women", "men")[(i // 9) % 2]
        conf = 0.5 + (i % 5) / 10
        rows += [{"product_id": pid, "key": "colour", "value": colour, "confidence": conf, "source": "encoder"},
                 {"product_id": pid, "key": "category", "value": kind, "confidence": 0.9, "source": "encoder"},
                 {"product_id": pid, "key": "gender", "value": gender, "confidence": 1.0, "source": "extraction"}]
    return pa.Table.from_pylist(rows, schema=ASSIGNMENTS)


def topic(tid: str, attrs: list[tuple[str, str]], title: str | None = None, status: str = "kept",
          judge: float = 0.8, slug: str | None = None) -> dict:
    return {"topic_id": tid, "slug": slug if slug is not None else tid, "title": title or tid.replace("-", " "),
            "query": (title or tid).lower(), "attributes": [{"key": k, "value": v} for k, v in attrs],
            "support": 10, "judge_score": judge, "status": status, "reason": None}


def synthetic_topics() -> pa.Table:
    rows = [
        topic("red-dress", [("colour", "red"), ("category", "dress")], title=HOSTILE, judge=0.9),
        topic("women-red", [("colour", "red"), ("gender", "women")]),
        topic("blue", [("colour", "blue")], judge=0.7),
        topic("women-shoes", [("gender", "women"), ("category", "shoes")]),
        topic("black-men-shirt", [("colour", "black"), ("category", "shirt"), ("gender", "men")]),
        topic("rejected", [("colour", "red")], status="rejected"),
        topic("purple", [("colour", "purple")]),
        topic("empty", []),
        topic("blue", [("colour", "blue")]),  # duplicate id
    ]
    return pa.Table.from_pylist(rows, schema=TOPICS)


def make_run(root: Path, topics: pa.Table | None = None, **feeds: object) -> Run:
    layout = RunLayout(root / "run")
    products = synthetic_products(root)
    write_table(products, layout.products, PRODUCTS)
    write_table(synthetic_assignments(products), layout.assignments, ASSIGNMENTS)
    write_table(topics if topics is not None else synthetic_topics(), layout.topics, TOPICS)
    cfg = PipelineConfig.model_validate({
        "spark": {"master": "local[1]", "shuffle_partitions": 2, "driver_memory": "1g"},
        "feeds": {"min_feed_size": 2, "category_key": "category", "min_confidence": 0.0, **feeds},
    })
    return Run(cfg, layout)


def feed(slug: str, product_ids: list[str], title: str | None = None, attrs: list[tuple[str, str]] | None = None,
         judge: float = 0.8) -> dict:
    """A FEEDS row with descending scores."""
    return {"topic_id": f"id-{slug}", "slug": slug, "title": title or slug.replace("-", " ").title(),
            "query": slug.replace("-", " "), "attributes": [{"key": k, "value": v} for k, v in attrs or [("colour", slug)]],
            "products": [{"product_id": p, "score": round(1 - i / 100, 6)} for i, p in enumerate(product_ids)],
            "judge_score": judge, "size": len(product_ids)}


def published_run(root: Path, feeds: list[dict] | None = None) -> RunLayout:
    """A run folder with products (tiny JPEGs) and published feeds, without running Spark."""
    from pinlanding.collections.schemas import FEEDS

    layout = RunLayout(root / "run")
    products = synthetic_products(root)
    write_table(products, layout.products, PRODUCTS)
    ids = products["product_id"].to_pylist()
    feeds = feeds if feeds is not None else [
        feed("red-dresses", ids[0:12], title=HOSTILE, attrs=[("colour", "red"), ("category", "dress")], judge=0.9),
        feed("blue-shirts", ids[10:16], attrs=[("colour", "blue"), ("category", "shirt")]),
        feed("women-shoes", ids[20:30], attrs=[("gender", "women"), ("category", "shoes")], judge=0.7),
    ]
    write_table(pa.Table.from_pylist(feeds, schema=FEEDS), layout.feeds, FEEDS)
    return layout


def mean_colour(pixels: np.ndarray) -> np.ndarray:
    """A stand-in product tower for photos ``[N, H, W, 3]``: the mean colour, centred and normalized (the
    synthetic products' photos differ only in colour)."""
    x = pixels.reshape(len(pixels), -1, 3).mean(1) - 100.0
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def with_visual_index(layout: RunLayout) -> RunLayout:
    """Give a run embeddings (:func:`mean_colour` of each product's photo) and the visual index built from them."""
    from pinlanding.collections.artifacts import read_table
    from pinlanding.collections.schemas import EMBEDDINGS
    from pinlanding.encoders.visual import build_visual_index

    products = read_table(layout.products, PRODUCTS)
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in products["image_path"].to_pylist()])
    emb = pa.table({"product_id": products["product_id"], "content_hash": products["content_hash"],
                    "model_version": ["v"] * products.num_rows,
                    "embedding": pa.array(mean_colour(pixels).tolist(), pa.list_(pa.float32()))})
    write_table(emb, layout.embeddings, EMBEDDINGS)
    build_visual_index(layout.embeddings, layout.products, layout.visual_index)
    return layout
