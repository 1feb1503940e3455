"""Scoped rebuilds: a reject/rename/merge keeps the encoder and maps its assignments; a new value does not;
stage fingerprints read only the decisions that change the stage."""
from __future__ import annotations

import pyarrow as pa

from pinlanding.collections.artifacts import tree_digest, write_json, write_table
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import read_all, write_parts
from pinlanding.collections.pipeline import Pipeline, get_stage
from pinlanding.collections.schemas import ASSIGNMENTS, VOCAB
from pinlanding.collections.scoped import map_assignments, reuse_encoder, value_map
from pinlanding.vocab.decisions import Decision, DecisionStore, ReviewState, decisions_path


def _vocab(layout: RunLayout, values: list[str]) -> None:
    write_table(pa.Table.from_pylist([{"key": "color", "value": v, "variants": [], "product_count": 1, "status": "approved",
                                       "judge_score": None, "provenance": "{}"} for v in values], schema=VOCAB),
                layout.root / "vocabulary" / "vocabulary.parquet", VOCAB)


def _run(tmp_path) -> tuple[PipelineConfig, RunLayout, dict, dict]:
    layout = RunLayout(tmp_path / "run")
    (layout.root / "catalog").mkdir(parents=True)
    (layout.root / "catalog" / "products.parquet").write_bytes(b"stand-in")
    (layout.root / "attributes").mkdir()
    (layout.root / "attributes" / "attributes.parquet").write_bytes(b"the extraction")
    _vocab(layout, ["Red", "Blue", "Navy"])
    write_json(layout.root / "encoder" / "thresholds.json",
               [{"key": "color", "value": v, "threshold": 0.5} for v in ("Red", "Blue", "Navy")])
    rows = [("p1", "Red", 0.9, "encoder"), ("p1", "Navy", 0.4, "extraction"), ("p1", "Blue", 0.7, "encoder"),
            ("p2", "Blue", 0.8, "extraction+encoder"), ("p3", "Red", 0.6, "extraction")]
    write_parts(layout.assignments, {"part-00000": pa.Table.from_pylist(
        [{"product_id": p, "key": "color", "value": v, "confidence": c, "source": s} for p, v, c, s in rows],
        schema=ASSIGNMENTS)}, ASSIGNMENTS)
    digest = {name: tree_digest(layout.root / name) for name in ("catalog", "encoder", "assignments", "attributes")}
    train = {"inputs": {"catalog": digest["catalog"], "attributes": digest["attributes"]},
             "outputs": {"encoder": digest["encoder"]}, "counts": {}}
    assign = {"inputs": {"catalog": digest["catalog"], "encoder": digest["encoder"], "attributes": digest["attributes"]},
              "outputs": {"assignments": digest["assignments"]}, "counts": {}}
    return PipelineConfig(), layout, train, assign


def _decide(layout: RunLayout, *decisions: Decision) -> None:
    DecisionStore(decisions_path(layout)).extend(list(decisions))


def test_value_map_follows_renames_and_merges_and_drops_rejects():
    state = ReviewState.from_decisions([Decision(action="rename", who="m", key="color", value="Blue", target="Azure"),
                                        Decision(action="merge", who="m", key="color", value="Azure", target="navy"),
                                        Decision(action="reject", who="m", key="color", value="Red")])
    mapped = value_map(state, {("color", "Navy"), ("color", "Green")})
    assert [mapped("color", v) for v in ("Blue", "Red", "Green", "Pink")] == ["Navy", None, "Green", None]


def test_rename_reject_merge_keep_the_encoder_and_map_its_assignments(tmp_path):
    cfg, layout, train, assign = _run(tmp_path)
    _decide(layout, Decision(action="merge", who="m", key="color", value="Navy", target="Blue"),
            Decision(action="rename", who="m", key="color", value="Blue", target="Sky"))
    _vocab(layout, ["Red", "Sky"])  # what the vocab stage makes of the decisions
    assert "encoder kept" in reuse_encoder(cfg, layout, train)["reused"]
    counts = map_assignments(cfg, layout, assign)
    rows = sorted((r["product_id"], r["value"], round(r["confidence"], 2), r["source"])
                  for r in read_all(layout.assignments, ASSIGNMENTS).to_pylist())
    assert rows == [("p1", "Red", 0.9, "encoder"), ("p1", "Sky", 0.7, "extraction+encoder"),
                    ("p2", "Sky", 0.8, "extraction+encoder"), ("p3", "Red", 0.6, "extraction")]
    assert counts["mapped"] == 3 and counts["assignments"] == 4
    # undoing the rename maps again from the encoder's own assignments, kept aside: Blue comes back
    decisions = DecisionStore(decisions_path(layout)).read()
    _decide(layout, Decision(action="undo", who="m", undoes=decisions[1].id, key="color", value="Blue"))
    _vocab(layout, ["Red", "Blue"])
    assign = {**assign, "outputs": {"assignments": tree_digest(layout.root / "assignments")}, "counts": counts}
    assert map_assignments(cfg, layout, assign) is not None
    assert {r["value"] for r in read_all(layout.assignments, ASSIGNMENTS).to_pylist()} == {"Red", "Blue"}


def test_a_new_value_or_another_catalogue_retrains(tmp_path):
    cfg, layout, train, assign = _run(tmp_path)
    _vocab(layout, ["Red", "Blue", "Navy", "Green"])  # Green: the encoder never learned it
    assert reuse_encoder(cfg, layout, train) is None
    _vocab(layout, ["Red"])
    (layout.root / "catalog" / "products.parquet").write_bytes(b"another catalogue")
    assert reuse_encoder(cfg, layout, train) is None and map_assignments(cfg, layout, assign) is None
    assert reuse_encoder(cfg, layout, {}) is None


def test_another_extraction_trains_and_assigns_again(tmp_path):
    """New rules or confidences change the curated pairs and the graph's fused confidences, not only names."""
    cfg, layout, train, assign = _run(tmp_path)
    _decide(layout, Decision(action="reject", who="m", key="color", value="Navy"))
    _vocab(layout, ["Red", "Blue"])
    (layout.root / "attributes" / "attributes.parquet").write_bytes(b"the extraction, with other confidences")
    assert reuse_encoder(cfg, layout, train) is None and map_assignments(cfg, layout, assign) is None


def test_fingerprints_read_only_their_decisions(tmp_path):
    layout = RunLayout(tmp_path / "run")
    pipeline = Pipeline(PipelineConfig(), layout)
    stages = [get_stage(n) for n in ("vocab", "topics", "feeds")]
    start = [pipeline.fingerprint(s) for s in stages]
    _decide(layout, Decision(action="pin", who="m", topic_id="t", value="p1", target="1"))
    pinned = [pipeline.fingerprint(s) for s in stages]
    assert pinned[:2] == start[:2] and pinned[2] != start[2]  # a pin reruns feeds, not curation or topics
    _decide(layout, Decision(action="accept", who="m", topic_id="t"))
    accepted = [pipeline.fingerprint(s) for s in stages]
    assert accepted[0] == start[0] and accepted[1] != pinned[1] and accepted[2] == pinned[2]
