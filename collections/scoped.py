"""Scoped rebuilds: a review decision that only rejects, renames or merges values keeps the encoder.

The encoder scores the vocabulary it was trained on (``encoder/thresholds.json``). When every value of the
new vocabulary is one of those values, or what a reject/rename/merge decision turned one into, retraining
would learn the same thing under other names, so :func:`reuse_encoder` keeps the model and
:func:`map_assignments` rewrites the assignments the encoder produced (kept in ``RUN/scoped/``) through the
decisions instead of assigning the catalogue again. Anything else (a new value, another catalogue, another
encoder, another extraction: new rules or confidences change the curated pairs and the graph merged from them)
returns None and the stage runs in full. Both are ``Stage.reuse`` hooks of the pipeline.
"""
from __future__ import annotations

import shutil
from collections import defaultdict
from typing import Any, Callable

import pyarrow as pa

from pinlanding.collections.artifacts import is_remote, read_json, read_table, tree_digest_or_absent, write_json
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import commit_parts, iter_parts, list_parts, write_part
from pinlanding.collections.schemas import ASSIGNMENTS, VOCAB
from pinlanding.collections.text import key_form
from pinlanding.vocab.clustering import normalize_value
from pinlanding.vocab.decisions import ReviewState, decisions_path, load_review_state

Pair = tuple[str, str]
MAX_CHAIN = 20  # rename of a rename ...: longer chains (or cycles) stop here


def value_map(state: ReviewState, vocabulary: set[Pair], fold: bool = True) -> Callable[[str, str], str | None]:
    """(key, value) -> the value it is called now: followed through rename/merge decisions, None when
    rejected or no longer in ``vocabulary``."""
    def norm_of(value: str) -> str:
        return normalize_value(value, fold)

    by_norm = {(key_form(k), norm_of(v)): v for k, v in vocabulary}

    def mapped(key: str, value: str) -> str | None:
        nk = key_form(key)
        for _ in range(MAX_CHAIN):
            norm = norm_of(value)
            if state.rejected(nk, norm):
                return None
            d = state.mapping.get((nk, norm))
            if d is None or d.action not in ("rename", "merge") or norm_of(d.target) == norm:
                break
            value = by_norm.get((nk, norm_of(d.target)), d.target)
        return by_norm.get((nk, norm_of(value)))

    return mapped


def vocabulary_pairs(layout: RunLayout) -> set[Pair]:
    """The run's current vocabulary as (key, value) pairs (empty before the vocab stage)."""
    path = layout.root / "vocabulary" / "vocabulary.parquet"
    if not path.exists():
        return set()
    table = read_table(path, VOCAB)
    return set(zip(table.column("key").to_pylist(), table.column("value").to_pylist()))


def current_names(cfg: PipelineConfig, layout: RunLayout) -> Callable[[str, str], str | None]:
    """:func:`value_map` for the run's decisions and current vocabulary."""
    fold = cfg.vocab.cluster.fold_plurals
    return value_map(load_review_state(decisions_path(layout, cfg.vocab.decisions_path), fold),
                     vocabulary_pairs(layout), fold)


def _same_inputs(layout: RunLayout, previous: dict[str, Any], names: tuple[str, ...]) -> bool:
    seen = previous.get("inputs") or {}
    return all(name in seen and seen[name] == tree_digest_or_absent(layout.root / name) for name in names)


def reuse_encoder(cfg: PipelineConfig, layout: RunLayout, previous: dict[str, Any]) -> dict[str, Any] | None:
    """Counts for the manifest when the trained encoder still covers the vocabulary (see module doc)."""
    if is_remote(layout.root) or not _same_inputs(layout, previous, ("catalog", "attributes")) \
            or (previous.get("outputs") or {}).get("encoder") != tree_digest_or_absent(layout.root / "encoder"):
        return None
    trained = {(r["key"], r["value"]) for r in read_json(layout.root / "encoder" / "thresholds.json", default=[]) or []}
    now = vocabulary_pairs(layout)
    if not trained or not now:
        return None
    mapped = current_names(cfg, layout)
    covered = {(k, mapped(k, v)) for k, v in trained}
    if not now <= covered:
        return None
    return {**(previous.get("counts") or {}), "reused": "encoder kept: the vocabulary change is rejects, renames "
            f"and merges of trained values ({len(trained - now)} trained values now mapped or dropped)"}


def map_assignments(cfg: PipelineConfig, layout: RunLayout, previous: dict[str, Any]) -> dict[str, Any] | None:
    """Rewrite the encoder's assignments through the decisions when the encoder and catalogue are unchanged."""
    if is_remote(layout.root) or not _same_inputs(layout, previous, ("catalog", "encoder", "attributes")) \
            or (previous.get("outputs") or {}).get("assignments") != tree_digest_or_absent(layout.root / "assignments"):
        return None
    base = layout.root / "scoped" / "assignments.parquet"
    marker = layout.root / "scoped" / "encoder.json"
    encoder = tree_digest_or_absent(layout.root / "encoder")
    if (read_json(marker, default={}) or {}).get("encoder") != encoder:
        if (previous.get("counts") or {}).get("mapped"):
            return None  # the assignments on disk are already mapped ones and the encoder's own are gone
        shutil.rmtree(base, ignore_errors=True)
        shutil.copytree(layout.assignments, base)
        write_json(marker, {"encoder": encoder})
    mapped = current_names(cfg, layout)
    parts, rows, changed = [], 0, 0
    for name, table in iter_parts(base, ASSIGNMENTS):
        best: dict[tuple[str, str, str], list[Any]] = {}
        sources: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for pid, key, value, conf, source in zip(*(table.column(c).to_pylist() for c in ASSIGNMENTS.names)):
            new = mapped(key, value)
            if new is None:
                changed += 1
                continue
            changed += new != value
            slot = (pid, key, new)
            if slot not in best or (conf or 0.0) > (best[slot][3] or 0.0):
                best[slot] = [pid, key, new, conf, source]
            sources[slot].update((source or "").split("+"))
        for slot, row in best.items():  # a merge pools the sources that gave either value
            row[4] = "+".join(s for s in ("extraction", "encoder") if s in sources[slot]) or row[4]
        out = pa.Table.from_pylist([dict(zip(ASSIGNMENTS.names, r)) for r in best.values()], schema=ASSIGNMENTS)
        rows += out.num_rows
        parts.append(write_part(layout.assignments, name, out, ASSIGNMENTS))
    if [p.name for p in parts] != [p.name for p in list_parts(base)]:
        return None
    commit_parts(layout.assignments, parts, ASSIGNMENTS)
    return {**(previous.get("counts") or {}), "mapped": changed, "assignments": rows,
            "reused": "encoder's assignments mapped through the review decisions, catalogue not assigned again"}
