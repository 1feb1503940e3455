"""The feeds stage end to end on a tiny run: schema, JSONL, rank order, drop reasons, ANN-style matching."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from feedkit import COLOURS, HOSTILE, make_run
from testlib import split_into_parts
from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ASSIGNMENTS, EMBEDDINGS, FEEDS, FEEDS_DROPPED
from pinlanding.feeds.build import run_feeds

pytestmark = pytest.mark.slow  # starts Spark
# score order alone: variants and diversity have their own tests (test_distinct.py); the fixture's photos repeat
LEGACY = {"variants": False, "diversify_keys": []}


@pytest.fixture(scope="module")
def strict_run(tmp_path_factory, spark):
    ctx = make_run(tmp_path_factory.mktemp("feeds"), **LEGACY)
    return ctx, call_stage(run_feeds, *ctx)


def test_feeds_schema_and_jsonl(strict_run):
    ctx, counts = strict_run
    table = read_table(ctx.layout.feeds, FEEDS)
    assert table.schema.names == FEEDS.names
    lines = [json.loads(line) for line in ctx.layout.feeds_jsonl.read_text(encoding="utf-8").splitlines()]
    assert lines == table.to_pylist()
    assert all(list(line) == ["topic_id", "slug", "title", "query", "attributes", "products", "judge_score", "size",
                                "aliases"]
               for line in lines)
    assert [line["slug"] for line in lines] == ["red-dress", "black-men-shirt", "women-shoes"]  # judge desc, id
    assert counts["feeds"] == 3 and counts["topics_in"] == 8
    assert lines[0]["title"] == HOSTILE  # data stays raw; pages escape it


def test_products_in_rank_order(strict_run):
    ctx, _ = strict_run
    by_slug = {f["slug"]: f for f in read_table(ctx.layout.feeds, FEEDS).to_pylist()}
    red = by_slug["red-dress"]["products"]
    assert [p["product_id"] for p in red] == ["p009", "p018", "p027", "p000"]  # confidence (0.9, 0.85 ...)
    shoes = by_slug["women-shoes"]["products"]
    assert [p["score"] for p in shoes] == [0.95] * 6  # all tie: product_id breaks ties
    assert [p["product_id"] for p in shoes] == sorted(p["product_id"] for p in shoes)
    for f in by_slug.values():
        assert f["size"] == len(f["products"])
        scores = [p["score"] for p in f["products"]]
        assert scores == sorted(scores, reverse=True)


def test_dropped_topics_have_reasons(strict_run):
    ctx, counts = strict_run
    dropped = read_table(ctx.layout.dir("feeds") / "dropped.parquet", FEEDS_DROPPED).to_pylist()
    reasons = sorted((d["topic_id"], d["reason"]) for d in dropped)
    assert reasons == [("blue", "category_nonconformity"), ("blue", "duplicate_topic"), ("empty", "no_attributes"),
                       ("purple", "thin_feed"), ("women-red", "category_nonconformity")]
    blue = next(d for d in dropped if d["reason"] == "category_nonconformity" and d["topic_id"] == "blue")
    assert blue["size"] == 12 and blue["conformity"] == pytest.approx(1 / 3)
    assert "rejected" not in ctx.layout.feeds_jsonl.read_text()  # rejected topics never become feeds
    assert counts["dropped_by_reason"]["category_nonconformity"] == 2


def test_ann_matching_adds_embedding_neighbours(tmp_path, spark):
    ctx = make_run(tmp_path, matching="ann", min_overlap=2, min_conformity=0.0, ann={"min_similarity": 0.9, "weight": 0.5},
                   **LEGACY)
    ids = [f"p{i:03d}" for i in range(36)]
    vectors = np.eye(3, dtype=np.float32)[[i % 3 for i in range(36)]]  # embedding = colour one-hot
    write_table(pa.Table.from_pylist([{"product_id": p, "content_hash": None, "model_version": "test",
                                       "embedding": v.tolist()} for p, v in zip(ids, vectors)], schema=EMBEDDINGS),
                ctx.layout.embeddings, EMBEDDINGS)
    counts = call_stage(run_feeds, *ctx)
    assert counts["ann_pairs"] > 0
    red = next(f for f in read_table(ctx.layout.feeds, FEEDS).to_pylist() if f["slug"] == "red-dress")
    members = [p["product_id"] for p in red["products"]]
    assert members[:4] == ["p009", "p018", "p027", "p000"]  # attribute matches first
    assert set(members[4:]) == {p for i, p in enumerate(ids) if COLOURS[i % 3] == "red"} - set(members[:4])


def test_ann_needs_embeddings(tmp_path, spark):
    with pytest.raises(FileNotFoundError, match="embeddings"):
        call_stage(run_feeds, *make_run(tmp_path, matching="ann"))


def test_parted_inputs_give_the_same_feeds(tmp_path, spark, monkeypatch):
    from pinlanding.collections import parts

    def run(root, rows_per_part):
        ctx = make_run(root, matching="ann", min_overlap=2, min_conformity=0.0, ann={"min_similarity": 0.9, "weight": 0.5})
        ids = [f"p{i:03d}" for i in range(36)]
        vectors = np.eye(3, dtype=np.float32)[[i % 3 for i in range(36)]]
        write_table(pa.Table.from_pylist([{"product_id": p, "content_hash": None, "model_version": "test",
                                           "embedding": v.tolist()} for p, v in zip(ids, vectors)], schema=EMBEDDINGS),
                    ctx.layout.embeddings, EMBEDDINGS)
        if rows_per_part:
            names = split_into_parts(ctx.layout.products, rows_per_part, (ctx.layout.assignments, ASSIGNMENTS),
                                     (ctx.layout.embeddings, EMBEDDINGS))
            assert len(names) == 3 and parts.part_names(ctx.layout.embeddings) == names
            monkeypatch.setattr(parts, "read_all", lambda *a, **k: pytest.fail("read a whole per-product artifact"))
        counts = call_stage(run_feeds, *ctx)
        monkeypatch.undo()
        return counts, read_table(ctx.layout.feeds, FEEDS).to_pylist()

    (whole_counts, whole), (parted_counts, parted) = run(tmp_path / "a", 0), run(tmp_path / "b", 12)
    assert parted == whole and parted_counts["ann_pairs"] == whole_counts["ann_pairs"] > 0


def test_top_k_path_and_every_candidate_give_the_same_feeds(tmp_path, spark):
    """``topk_min_products`` only picks how strict feeds are scored: the bounded top-K (counts say so) and scoring
    every candidate rank the same products in the same order, variants and diversity included."""
    small = {"candidate_pool": 3, "max_products": 3}
    runs = {name: make_run(tmp_path / name, topk_min_products=floor, **small)
            for name, floor in (("topk", 0), ("every", 10**9))}
    counts = {name: call_stage(run_feeds, *ctx) for name, ctx in runs.items()}
    assert sum(counts["topk"]["topk_topics"].values()) > 0 and "topk_topics" not in counts["every"]
    feeds = {name: read_table(ctx.layout.feeds, FEEDS).to_pylist() for name, ctx in runs.items()}
    assert feeds["topk"] == feeds["every"] and any(f["products"] for f in feeds["topk"])
