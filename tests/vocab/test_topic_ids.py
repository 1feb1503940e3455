"""Topic ids come from the canonical attribute set, not its spelling; earlier ids still find reviewers' decisions."""
from __future__ import annotations

from pinlanding.vocab.topics import canonical_attribute, legacy_topic_id, topic_id


def test_respelling_keeps_the_id():
    base = (("category", "t-shirt"), ("color", "navy blue"))
    for respelled in [(("category", "T-Shirts"), ("colour", "Navy-Blue")), (("category", "tshirt"), ("color", "navy  blue")),
                      (("Category", "t shirt"), ("base_colour", "NAVY BLUE")), tuple(reversed(base))]:
        assert topic_id(respelled) == topic_id(base), respelled
    assert len(topic_id(base)) == 16


def test_different_values_and_keys_keep_different_ids():
    assert topic_id((("category", "pants"),)) != topic_id((("category", "trousers"),))  # other words, other values
    assert topic_id((("category", "dress"), ("color", "red"))) != topic_id((("category", "dress"),))
    assert topic_id((("style", "red"),)) != topic_id((("color", "red"),))  # a key no family covers stays itself
    assert canonical_attribute("fabric", "Cotton-Blend") == ["material", "cottonblend"]


def test_legacy_id_is_the_spelling_digest():
    attrs = (("category", "T-Shirts"), ("color", "Navy-Blue"))
    assert legacy_topic_id(attrs) != topic_id(attrs)
    assert legacy_topic_id(attrs) == legacy_topic_id(tuple(reversed(attrs)))


def test_a_decision_under_the_legacy_id_still_applies(tmp_path):
    import json

    from curate_fixtures import context, tiny_attributes, write_queries, write_run

    from pinlanding.collections.artifacts import read_table
    from pinlanding.collections.schemas import TOPICS
    from pinlanding.vocab.curate import run_vocab
    from pinlanding.vocab.decisions import Decision, DecisionStore, decisions_path
    from pinlanding.vocab.topics import run_topics

    layout = write_run(tmp_path / "run", tiny_attributes(), 60)
    queries = write_queries(tmp_path / "queries.tsv")
    run_vocab(context(layout, queries))
    cfg = {"vocab.judge.keep_threshold": 0.8}
    run_topics(context(layout, queries, **cfg))
    kept = next(t for t in read_table(layout.topics, TOPICS).to_pylist() if t["status"] == "kept")
    pairs = tuple((a["key"], a["value"]) for a in kept["attributes"])
    assert kept["topic_id"] == topic_id(pairs) != legacy_topic_id(pairs)
    DecisionStore(decisions_path(layout)).append(Decision(
        action="reject_topic", who="merch", topic_id=legacy_topic_id(pairs), value=kept["title"],
        target=json.dumps([list(p) for p in pairs])))
    run_topics(context(layout, queries, **cfg))
    after = {t["topic_id"]: t for t in read_table(layout.topics, TOPICS).to_pylist()}
    assert after[kept["topic_id"]]["status"] == "rejected" and "rejected in review by merch" in after[kept["topic_id"]]["reason"]
