"""Vocabulary curation: each step on tiny fixtures, review decisions honoured, versions and diffs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from curate_fixtures import HOSTILE, context, tiny_attributes, write_queries, write_run

from pinlanding.collections.artifacts import read_json, read_table
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ATTRIBUTES, VOCAB, VOCAB_MERGES, VOCAB_DROPPED
from pinlanding.collections.text import key_form
from pinlanding.vocab.clustering import ValueClusterer, attach, lexically_distinct, normalize_value, sanitize_value
from pinlanding.vocab.curate import run_vocab
from pinlanding.vocab.versions import diff_vocabularies
from pinlanding.vocab.decisions import Decision, DecisionStore, decisions_path


# --- pure steps -----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, reason", [
    (None, "empty"), ("", "empty"), ("   ", "empty"), ("\x00\x07", "empty"), ("x" * 500, "too_long"),
    ("<script>alert(1)</script>", "markup"), ("&lt;b&gt;", "markup"), ("🙂🙂", "no_text"), ("--", "no_text"),
])
def test_sanitize_rejects_unusable_values_with_a_reason(raw, reason):
    assert sanitize_value(raw, 60) == ("", reason)


@pytest.mark.parametrize("raw, clean", [
    ("  Navy   Blue ", "Navy Blue"), ("कुर्ता", "कुर्ता"), ("Cotton 🌿", "Cotton 🌿"), ("a\tb\nc", "a b c"),
    ("5 < 6 inches", "5 < 6 inches"),
])
def test_sanitize_keeps_real_text_in_any_script(raw, clean):
    assert sanitize_value(raw, 60) == (clean, None)


def test_normalize_groups_spelling_variants_but_not_different_words():
    forms = ["T-Shirt", "Tshirts", "t shirt", "T_SHIRT", "T-shirts"]
    assert {normalize_value(f) for f in forms} == {"tshirt"}
    assert normalize_value("Dress") == normalize_value("Dresses") == "dress"
    assert normalize_value("Watches") == "watch" and normalize_value("Shoes") == "shoe"
    assert normalize_value("Chinos") == "chino" and normalize_value("Bus") == "bus"
    assert normalize_value("Ladies") == normalize_value("Lady") and normalize_value("Sizes") == "size"  # one plural rule
    assert normalize_value("Shoes", fold_plurals=False) != normalize_value("Shoe", fold_plurals=False)
    assert key_form(" Sleeve Length") == "sleeve_length"


def test_lexical_guard_refuses_modifier_and_number_merges():
    assert lexically_distinct("Blue", "Light Blue")
    assert lexically_distinct("Striped Shirt", "Striped T-shirt")
    assert lexically_distinct("3 Socks", "5 Socks")
    assert not lexically_distinct("Duffle Bag", "Duffel Bag")
    assert not lexically_distinct("Sports Shoes", "Sport Shoes")


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("method", ["agglomerative", "hdbscan"])
def test_clusterer_merges_only_close_values_into_the_most_frequent(method):
    emb = _unit([[1, 0.05, 0], [1, 0.0, 0.02], [1, 0.1, 0.0], [0, 1, 0], [0, 1, 0.05], [0, 0, 1]])
    counts = [5, 50, 3, 20, 30, 7]
    c = ValueClusterer(method, merge_similarity=0.95, min_cluster_size=2).fit(emb, counts)
    assert c.method_ == method
    assert list(c.canonical_) == [1, 1, 1, 4, 4, 5]
    assert all(c.similarity_[i] >= 0.95 for i in range(6))


def test_clusterer_respects_can_merge_and_threshold():
    emb = _unit([[1, 0.05, 0], [1, 0.0, 0.02], [1, 0.6, 0]])
    c = ValueClusterer("agglomerative", merge_similarity=0.95).fit(emb, [5, 50, 3], can_merge=lambda i, j: {i, j} != {0, 1})
    assert list(c.canonical_) == [0, 1, 2]  # 0 refused by the guard, 2 too far
    with pytest.raises(ValueError, match="merge_similarity"):
        ValueClusterer(merge_similarity=0).fit(emb, [1, 1, 1])


def test_attach_maps_rare_values_only_above_threshold():
    best, sims = attach(_unit([[1, 0.01], [0.5, 0.5]]), _unit([[1, 0], [0, 1]]), 0.9)
    assert list(best) == [0, -1] and sims[0] > 0.99


# --- the stage on a tiny run ----------------------------------------------------------------------

@pytest.fixture
def tiny_run(tmp_path):
    layout = write_run(tmp_path / "run", tiny_attributes(), 60)
    return layout, write_queries(tmp_path / "queries.tsv")


def _vocab(layout):
    return {(r["key"], r["value"]): r for r in read_table(layout.vocabulary, VOCAB).to_pylist()}


def test_run_vocab_curates_merges_drops_and_reports(tiny_run):
    layout, queries = tiny_run
    counts = call_stage(run_vocab, *context(layout, queries))
    vocab = _vocab(layout)
    assert counts["version"] == "v0001"
    # exact normalization: the most frequent spelling is canonical, every spelling is a recorded merge
    tshirt = vocab[("category", "T-Shirt")]
    assert set(tshirt["variants"]) == {"Tshirts", "tshirt"} and tshirt["product_count"] == 22
    assert vocab[("color", "Black")]["product_count"] == 20 and vocab[("color", "Navy Blue")]["product_count"] == 12
    assert vocab[("category", "Dress")]["product_count"] == 18
    # different things stay apart however close their embeddings
    for value in ("Blue", "Light Blue", "Shoes", "Sports Shoes"):
        assert ("color" if "Blue" in value else "category", value) in vocab
    # the rare "Sport Shoes" is attached to "Sports Shoes" by embedding similarity
    merges = read_table(layout.dir("vocabulary") / "merges.parquet", VOCAB_MERGES).to_pylist()
    sport = next(m for m in merges if m["variant"] == "Sport Shoes")
    assert sport["canonical"] == "Sports Shoes" and sport["method"] in ("attach", "normalize")
    # other scripts and emoji survive as values; hostile and rare values are dropped with reasons
    assert ("material", "कपास") in vocab and ("material", "Cotton 🌿") in vocab
    dropped = read_table(layout.dir("vocabulary") / "dropped.parquet", VOCAB_DROPPED).to_pylist()
    reasons = {(d["key"], d["reason"]) for d in dropped}
    assert {("pattern", "empty"), ("pattern", "too_long"), ("pattern", "markup"), ("pattern", "no_text"),
            ("(empty)", "empty_key"), ("category", "rare"), ("color", "rare")} <= reasons
    assert not any(k == "pattern" for k, _ in vocab)
    assert len(dropped) >= len(HOSTILE)
    # curated attributes carry canonical values only, one row per product/key/value
    cur = read_table(layout.curated_attributes, ATTRIBUTES).to_pylist()
    assert {(r["key"], r["value"]) for r in cur} == set(vocab)
    p12 = {(r["key"], r["value"], r["raw"]) for r in cur if r["product_id"] == "p12"}
    assert ("category", "T-Shirt", "Tshirts") in p12
    # the report compares raw and curated
    report = read_json(layout.dir("vocabulary") / "report.json")
    assert report["raw"]["distinct_values_per_key"]["category"] > report["curated"]["distinct_values_per_key"]["category"]
    assert report["raw"]["distinct_values"] > report["curated"]["distinct_values"]
    assert report["curated"]["share_values_under_10_products"] <= report["raw"]["share_values_under_10_products"]
    assert report["clusters_merged"] >= 4 and report["merge_examples"]
    md = (layout.dir("vocabulary") / "report.md").read_text()
    assert "mean attributes per product" in md and "T-Shirt" in md


def _decide(layout, **kw):
    DecisionStore(decisions_path(layout)).append(Decision(who="tester", **kw))


def test_review_decisions_are_honoured_on_rerun(tiny_run):
    layout, queries = tiny_run
    call_stage(run_vocab, *context(layout, queries))
    _decide(layout, action="reject", key="color", value="Red")
    _decide(layout, action="rename", key="category", value="T-Shirt", target="Tee")
    _decide(layout, action="merge", key="color", value="Light Blue", target="Blue")
    _decide(layout, action="split", key="category", value="Sport Shoes")
    _decide(layout, action="approve", key="color", value="Lavender Blush")
    counts = call_stage(run_vocab, *context(layout, queries))
    vocab = _vocab(layout)
    assert counts["version"] == "v0002" and counts["decisions_applied"] == 5
    assert ("color", "Red") not in vocab
    assert ("category", "T-Shirt") not in vocab and set(vocab[("category", "Tee")]["variants"]) >= {"T-Shirt", "Tshirts"}
    assert ("color", "Light Blue") not in vocab and vocab[("color", "Blue")]["product_count"] == 20
    assert vocab[("category", "Sports Shoes")]["product_count"] == 10 and vocab[("category", "Sport Shoes")]["product_count"] == 1
    assert vocab[("color", "Lavender Blush")]["status"] == "approved"  # on one product, kept because approved
    cur = read_table(layout.curated_attributes, ATTRIBUTES).to_pylist()
    assert not any(r["value"] == "Red" for r in cur)
    dropped = read_table(layout.dir("vocabulary") / "dropped.parquet", VOCAB_DROPPED).to_pylist()
    red = next(d for d in dropped if d["value"] == "Red")
    assert red["reason"] == "rejected" and "tester" in red["detail"]
    diff = read_json(layout.dir("vocabulary") / "diff.json")
    assert diff["from"] == "v0001" and diff["to"] == "v0002"
    assert {"key": "category", "from": "T-Shirt", "to": "Tee"} in diff["renamed"]
    assert any(r["value"] == "Red" for r in diff["removed"])
    # a third run with the same inputs changes nothing: no new version
    assert call_stage(run_vocab, *context(layout, queries))["version"] == "v0002"
    assert (layout.dir("vocabulary") / "versions" / "v0002.json").exists()
    assert not (layout.dir("vocabulary") / "versions" / "v0003.json").exists()
    # the rejected value never comes back, even when the extraction now finds it more often
    extra = [(f"p{i}", "color", "RED") for i in range(0, 50)]
    from curate_fixtures import write_attributes

    write_attributes(layout, tiny_attributes() + extra)
    call_stage(run_vocab, *context(layout, queries))
    assert not any(k == "color" and v.lower() == "red" for k, v in _vocab(layout))
    # undo: a later approval brings it back
    _decide(layout, action="approve", key="color", value="Red")
    call_stage(run_vocab, *context(layout, queries))
    assert any(k == "color" and v.lower() == "red" for k, v in _vocab(layout))


def test_rejecting_a_canonical_removes_its_variants(tiny_run):
    layout, queries = tiny_run
    _decide(layout, action="reject", key="category", value="T-Shirt")
    call_stage(run_vocab, *context(layout, queries))
    assert not any(v.lower().startswith("t") and k == "category" for k, v in _vocab(layout))
    cur = read_table(layout.curated_attributes, ATTRIBUTES).to_pylist()
    assert not any(r["key"] == "category" and r["product_id"] in {"p0", "p12", "p20"} for r in cur)


def test_unreadable_decision_lines_are_skipped(tiny_run):
    layout, queries = tiny_run
    path = decisions_path(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"broken": \n' + json.dumps({"action": "explode", "who": "x"}) + "\n")
    _decide(layout, action="reject", key="color", value="Red")
    call_stage(run_vocab, *context(layout, queries))
    report = read_json(layout.dir("vocabulary") / "report.json")
    assert report["review"] == {"decisions": 1, "skipped": 2, "applied": 1}


def test_missing_inputs_and_bad_config_fail_clearly(tmp_path):
    layout = write_run(tmp_path / "run", [("p0", "color", "Red")], 3)
    layout.attributes.unlink()
    with pytest.raises(FileNotFoundError, match="attributes"):
        call_stage(run_vocab, *context(layout, write_queries(tmp_path / "q.tsv")))
    with pytest.raises(ValueError):
        context(layout, tmp_path / "q.tsv", **{"vocab.cluster.method": "kmeans"})


def test_empty_attributes_give_an_empty_vocabulary(tmp_path):
    layout = write_run(tmp_path / "run", [], 5)
    counts = call_stage(run_vocab, *context(layout, write_queries(tmp_path / "q.tsv")))
    assert counts["values"] == 0 and read_table(layout.curated_attributes, ATTRIBUTES).num_rows == 0


def test_diff_reports_status_count_and_variant_changes():
    old = [{"key": "c", "value": "Red", "variants": ["red"], "product_count": 5, "status": "pending"}]
    new = [{"key": "c", "value": "Red", "variants": ["red", "RED"], "product_count": 7, "status": "approved"}]
    diff = diff_vocabularies(old, new)
    assert diff["changed"] == [{"key": "c", "value": "Red", "status": ["pending", "approved"], "product_count": [5, 7],
                                "variants_added": ["RED"], "variants_removed": []}]
