"""Curation and topics on real Myntra titles (first 3,000 products) and the real shopper queries."""
from __future__ import annotations

import pytest

from testlib import DATASETS, require_myntra
from curate_fixtures import context, real_run, topics_over_curated

from pinlanding.collections.artifacts import read_json, read_table
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import TOPICS, VOCAB, VOCAB_MERGES
from pinlanding.vocab.clustering import normalize_value
from pinlanding.vocab.curate import run_vocab

pytestmark = pytest.mark.slow


def test_real_titles_curate_into_a_compact_vocabulary_and_judged_topics(tmp_path):
    myntra = require_myntra()
    queries = DATASETS / "search-queries" / "fashion12k_queries.tsv"
    if not queries.exists():
        pytest.skip(f"shopper queries not found at {queries}")
    layout = real_run(tmp_path / "run", myntra, limit=3000)
    ctx = context(layout, queries, **{"vocab.min_product_share": 0.002, "vocab.min_products": 5,
                                      "topics.min_support": 10})
    call_stage(run_vocab, *ctx)
    report = read_json(layout.dir("vocabulary") / "report.json")
    raw, cur = report["raw"], report["curated"]
    # fewer distinct values, far fewer rare ones, most of the attributes kept
    assert cur["distinct_values_per_key"]["category"] < raw["distinct_values_per_key"]["category"] / 3
    assert cur["share_values_under_10_products"] < raw["share_values_under_10_products"] / 2
    assert cur["mean_attributes_per_product"] > 0.9 * raw["mean_attributes_per_product"]
    # real spelling variety is merged into one canonical
    merges = read_table(layout.dir("vocabulary") / "merges.parquet", VOCAB_MERGES).to_pylist()
    tshirt = {m["variant"] for m in merges if m["key"] == "category" and normalize_value(m["canonical"]) == "tshirt"}
    assert len(tshirt) >= 3 and {"Tshirts", "T-shirt", "T-Shirts"} & tshirt
    vocab = read_table(layout.vocabulary, VOCAB).to_pylist()
    assert all(v["product_count"] >= report["threshold"] for v in vocab)
    assert all(v["judge_score"] is not None for v in vocab)

    topics_over_curated(ctx)
    topics = read_table(layout.topics, TOPICS).to_pylist()
    kept = [t for t in topics if t["status"] == "kept"]
    assert len(kept) > 20
    assert all(any(a["key"] == "category" for a in t["attributes"]) for t in topics)
    assert all(t["query"] == t["query"].lower() and t["support"] >= 10 for t in kept)
    by_query = {t["query"]: t for t in topics}
    assert by_query["tshirts for men"]["status"] == "kept"  # a common, real shopping intent
    judged = [t for t in topics if t["judge_score"] is not None]
    assert min(t["judge_score"] for t in kept if t["judge_score"] is not None) >= 0.5
    assert all(t["judge_score"] < 0.5 for t in judged if t["status"] == "rejected")
    assert read_json(layout.dir("topics") / "report.json")["kept"] == len(kept)
