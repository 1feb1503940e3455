"""Vocab and topics on a catalogue in several parts: the same outputs as on one part, never a whole input read."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from curate_fixtures import context, tiny_attributes, write_queries, write_run, topics_over_curated, write_graph
from testlib import split_into_parts

from pinlanding.collections import parts
from pinlanding.collections.artifacts import read_json, read_table
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ATTRIBUTES, PRODUCTS, TOPICS, VOCAB, VOCAB_DROPPED, VOCAB_MERGES
from pinlanding.vocab.curate import run_vocab
from pinlanding.vocab.decisions import Decision, DecisionStore, decisions_path
from pinlanding.vocab.topics import run_topics, topic_id

N_PRODUCTS = 70  # p60..p69 carry no attributes: the last part of 10 has none
RARE = [["category", "Sports Shoes"], ["gender", "Women"]]  # on 11 products (p40..p50), spread over two parts
AT = "2025-01-01T00:00:00+00:00"
SETTINGS = {"topics.min_support": 12}


def _run(root: Path, rows_per_part: int | None):
    layout = write_run(root / "run", tiny_attributes(), N_PRODUCTS)
    names = split_into_parts(layout.products, rows_per_part, (layout.attributes, ATTRIBUTES)) if rows_per_part else None
    store = DecisionStore(decisions_path(layout))  # fixed ids and times: both runs read the same decisions
    store.append(Decision(action="merge", who="t", key="color", value="Light Blue", target="Blue", at=AT, id="d1"))
    store.append(Decision(action="accept", who="t", topic_id=topic_id(tuple(map(tuple, RARE))),
                          target=json.dumps(RARE), at=AT, id="d2"))
    return layout, names, context(layout, write_queries(root / "queries.tsv"), **SETTINGS)


def _rows(path, schema) -> list[dict]:
    return read_table(path, schema).to_pylist()


def _as_set(rows: list[dict]) -> Counter:
    return Counter(json.dumps(r, sort_keys=True) for r in rows)


def test_parted_run_gives_the_same_vocabulary_curated_attributes_and_topics(tmp_path):
    one, _, one_ctx = _run(tmp_path / "one", None)
    many, names, many_ctx = _run(tmp_path / "many", 10)
    assert len(names) == 7
    for ctx in (one_ctx, many_ctx):
        call_stage(run_vocab, *ctx)
        topics_over_curated(ctx)
    vocab = one.dir("vocabulary")
    for rel, schema in (("vocabulary.parquet", VOCAB), ("merges.parquet", VOCAB_MERGES),
                        ("dropped.parquet", VOCAB_DROPPED)):
        assert _rows(many.dir("vocabulary") / rel, schema) == _rows(vocab / rel, schema), rel
    assert ("color", "Light Blue") not in {(r["key"], r["value"]) for r in _rows(one.vocabulary, VOCAB)}
    for rel in ("report.json", "diff.json"):
        assert read_json(vocab / rel) == read_json(many.dir("vocabulary") / rel), rel
    version = read_json(many.dir("vocabulary") / "versions/v0001.json")
    assert version["digest"] == read_json(vocab / "versions/v0001.json")["digest"]
    assert version["decisions_applied"] == ["d1"]
    assert (vocab / "report.md").read_text() == (many.dir("vocabulary") / "report.md").read_text()
    # curated attributes: the same rows, parted like the catalogue (the empty last part too)
    curated = _rows(many.curated_attributes, ATTRIBUTES)
    assert curated and _as_set(curated) == _as_set(_rows(one.curated_attributes, ATTRIBUTES))
    assert parts.part_names(many.curated_attributes) == names
    for name in names:
        ids = set(parts.read_part(many.curated_attributes, name, ATTRIBUTES)["product_id"].to_pylist())
        assert ids <= set(parts.read_part(many.products, name, PRODUCTS)["product_id"].to_pylist())
    assert parts.read_part(many.curated_attributes, names[-1], ATTRIBUTES).num_rows == 0
    # topics: the same candidates, support and verdicts; the accepted rare tuple counted across parts
    topics = _rows(many.topics, TOPICS)
    assert topics == _rows(one.topics, TOPICS)
    rare = next(t for t in topics if t["topic_id"] == topic_id(tuple(map(tuple, RARE))))
    assert rare["support"] == 11 and rare["status"] == "kept"
    assert read_json(one.dir("topics") / "report.json") == read_json(many.dir("topics") / "report.json")


def test_stages_read_per_product_inputs_one_part_at_a_time(tmp_path, monkeypatch):
    layout, names, ctx = _run(tmp_path, 10)

    def whole(folder, schema):
        raise AssertionError(f"read whole: {folder}")

    reads: Counter = Counter()
    read_file = parts.read_table

    def read_one_part(path, schema):
        assert not Path(path).is_dir(), path
        reads[Path(path).parent.parent.name] += 1  # catalog, attributes or vocabulary
        return read_file(path, schema)

    monkeypatch.setattr(parts, "read_all", whole)
    monkeypatch.setattr(parts, "read_table", read_one_part)
    call_stage(run_vocab, *ctx)
    assert reads == {"attributes": 2 * len(names)}  # a counting pass and a curating pass; the catalogue's listing only
    write_graph(layout)
    reads.clear()
    call_stage(run_topics, *ctx)
    # the attribute graph for single values, then tuples, then single values with and without the confidence
    # floor (the report's held-out values); the catalogue's brand and title in those four passes (near-identical
    # products count once) and its brands once more for their spelling: all part by part
    assert reads == {"assignments": 4 * len(names), "catalog": 5 * len(names)}


def test_attributes_parted_unlike_the_catalogue_are_refused(tmp_path):
    layout, names, ctx = _run(tmp_path, 10)
    table = parts.read_part(layout.attributes, names[0], ATTRIBUTES)
    parts.write_parts(layout.attributes, {"part-00099": table}, ATTRIBUTES)
    with pytest.raises(ValueError, match="part-00099"):
        call_stage(run_vocab, *ctx)
