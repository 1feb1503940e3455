"""Feeds and site on a slice of the real Myntra catalogue (topics/assignments derived from titles)."""
from __future__ import annotations

import gzip
import hashlib
import json
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pytest
import standins as synthetic

from testlib import Run

from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ASSIGNMENTS, FEEDS, PRODUCTS, TOPICS
from pinlanding.feeds.build import run_feeds
from pinlanding.feeds.site import run_site

pytestmark = pytest.mark.slow
MYNTRA = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "myntra"


def real_products(n: int) -> pa.Table:
    """The first ``n`` real products, input fields only (never the ground-truth labels)."""
    rows = []
    with gzip.open(MYNTRA / "styles.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in islice(f, n):
            r = json.loads(line)
            image = MYNTRA / "images" / f"{r['id']}.jpg"
            rows.append({"product_id": str(r["id"]), "title": r.get("productDisplayName") or str(r["id"]),
                         "brand": r.get("brandName"), "price": float(r["price"]) if r.get("price") else None,
                         "currency": "INR", "image_path": str(image) if image.exists() else None,
                         "content_hash": hashlib.sha256(line.encode()).hexdigest(), "source_row": len(rows)})
    return pa.Table.from_pylist(rows, schema=PRODUCTS)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, spark):
    if not (MYNTRA / "styles.jsonl.gz").exists():
        pytest.skip(f"real Myntra catalogue not found at {MYNTRA}")
    layout = RunLayout(tmp_path_factory.mktemp("real"))
    products = real_products(3000)
    assignments = synthetic.title_assignments(products)
    write_table(products, layout.products, PRODUCTS)
    write_table(assignments, layout.assignments, ASSIGNMENTS)
    write_table(synthetic.title_topics(assignments, min_support=15), layout.topics, TOPICS)
    return layout, assignments


def ctx(layout: RunLayout, **feeds) -> Run:
    cfg = PipelineConfig.model_validate({"spark": {"master": "local[1]", "shuffle_partitions": 2,
                                                   "driver_memory": "1g"}, "feeds": feeds})
    return Run(cfg, layout)


def test_real_feeds_are_strict_matches_and_pruning_changes_nothing(real_run):
    layout, assignments = real_run
    counts = call_stage(run_feeds, *ctx(layout))
    assert counts["feeds"] >= 20
    carried: dict[str, set] = {}
    for pid, k, v in zip(*(assignments[c].to_pylist() for c in ("product_id", "key", "value"))):
        carried.setdefault(pid, set()).add((k, v))
    feeds = read_table(layout.feeds, FEEDS).to_pylist()
    for f in feeds:
        need = {(a["key"], a["value"]) for a in f["attributes"]}
        assert all(need <= carried[p["product_id"]] for p in f["products"]), f["slug"]
        assert f["size"] >= 10
    pruned = layout.feeds_jsonl.read_text()
    call_stage(run_feeds, *ctx(layout, pruning=False))
    assert layout.feeds_jsonl.read_text() == pruned


def test_real_site(real_run):
    layout, _ = real_run
    if not layout.feeds.exists():
        call_stage(run_feeds, *ctx(layout))
    counts = call_stage(run_site, *ctx(layout))
    assert counts["missing_images"] == 0 and counts["collections"] > 0
    assert call_stage(run_site, *ctx(layout))["pages_written"] == 0
