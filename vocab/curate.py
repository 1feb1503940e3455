"""The vocab stage: raw extracted attributes -> a compact, reviewed shopping vocabulary.

The attributes are counted part by part (:mod:`.counts`), the driver fits the curator on the merged
counts (:mod:`.curator`), each part is mapped to canonical values and written as the same part of
``vocabulary/attributes.parquet``; then the vocabulary, its merges and drops, a new version
(:mod:`.versions`) and the report (:mod:`.report`) are written.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Callable, TypedDict

import pyarrow as pa

from pinlanding.collections.artifacts import AnyPath, as_path, write_json, write_table, write_text
from pinlanding.collections.config import RayConfig
from pinlanding.collections.engines import map_parts
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import Part, commit_parts, count_rows, part_names, read_part, write_part
from pinlanding.collections.schemas import ATTRIBUTES, VOCAB, VOCAB_DROPPED, VOCAB_MERGES
from pinlanding.collections.stage_inputs import Runtime, StageInputs, artifact, decisions, external
from pinlanding.vocab.clustering import EmbeddingCache
from pinlanding.vocab.config import VocabConfig
from pinlanding.vocab.counts import CuratedCounts, RawCounts, ValueStats, canonicalize, count_raw, merge_counts
from pinlanding.vocab.curator import VocabCurator
from pinlanding.vocab.decisions import load_review_state
from pinlanding.vocab.report import build_report, report_markdown
from pinlanding.vocab.versions import write_version


@dataclass(frozen=True)
class VocabInputs(StageInputs):
    """The vocab stage reads the catalogue, the raw attributes, the value decisions and the shopper queries."""

    outputs = ("vocabulary",)
    catalog: AnyPath = artifact("catalog")
    attributes: AnyPath = artifact("attributes")
    decisions: AnyPath = decisions("value")
    queries: AnyPath | None = external("vocab.judge.queries")


class VocabCounts(TypedDict):
    version: str
    values: int
    raw_distinct: int
    merged_clusters: int
    dropped: int
    curated_rows: int
    decisions_applied: int


def _value_scorer(cfg: VocabConfig, queries: AnyPath | None) -> Callable[[str, str], float | None] | None:
    """Value judge scores: share of shopper queries naming the value, log-scaled to [0, 1] (1 = 100+ queries)."""
    from pinlanding.vocab.judge import QueryIndex

    if queries is None:
        return None
    try:
        index = QueryIndex.from_tsv(queries, cfg.judge.query_column)
    except (FileNotFoundError, ValueError):
        return None
    return lambda key, value: round(min(1.0, math.log1p(index.mentions(value)) / math.log1p(100)), 4)


def _count_part(attributes: AnyPath, max_value_chars: int, fold_plurals: bool, weak_sources: tuple[str, ...],
                name: str) -> RawCounts:
    return count_raw(read_part(attributes, name, ATTRIBUTES), max_value_chars, fold_plurals, weak_sources)


def _curate_part(attributes: AnyPath, out: AnyPath, curator: "VocabCurator", name: str) -> tuple[Part, CuratedCounts]:
    table, counts = curator.transform(read_part(attributes, name, ATTRIBUTES))
    return write_part(out, name, table, ATTRIBUTES), counts


class _Transform:
    """What the curate tasks need of a fitted curator (its mapping, extras and held values; no embedder)."""

    def __init__(self, curator: "VocabCurator") -> None:
        self.mapping_, self.extras_, self.held = curator.mapping_, curator.extras_, curator.held_values()
        self.max_value_chars, self.fold_plurals = curator.max_value_chars, curator.cluster.fold_plurals

    def transform(self, attributes: pa.Table) -> tuple[pa.Table, CuratedCounts]:
        return canonicalize(attributes, self.mapping_, self.max_value_chars, self.fold_plurals, self.extras_, self.held)


def catalog_parts(layout: RunLayout, per_product: AnyPath) -> list[str]:
    """The catalogue's part names, checking that ``per_product`` (co-partitioned with it) has no other part."""
    names = part_names(layout.products)
    stray = sorted(set(part_names(per_product)) - set(names))
    if stray:
        raise ValueError(f"{per_product} has parts {stray} that catalog/products.parquet lacks (parts: {names}); "
                         "rerun the stage that writes it")
    return names


def curate(cfg: VocabConfig, inputs: VocabInputs,
           ray_cfg: RayConfig | None = None) -> tuple[VocabCurator, ValueStats, ValueStats]:
    """Fit the curator on the run's raw attributes (counted part by part), write the curated attributes part by
    part; return the curator and the raw and curated statistics."""
    layout = inputs.layout
    names = catalog_parts(layout, layout.attributes)
    fold = cfg.cluster.fold_plurals
    weak = tuple(cfg.evidence.weak_sources)
    raw = merge_counts(map_parts(partial(_count_part, layout.attributes, cfg.max_value_chars, fold, weak), names,
                                 ray_cfg, desc="vocab: count"), RawCounts())
    review = load_review_state(inputs.decisions, fold)
    embedder = EmbeddingCache(cfg.cluster.model, layout.dir("vocabulary") / ".embedding_cache.parquet",
                              cfg.cluster.batch_size)
    curator = VocabCurator(cfg.min_product_share, cfg.min_products, cfg.max_value_chars, cfg.cluster, review,
                           embedder, _value_scorer(cfg, inputs.queries), cfg.category_key,
                           cfg.evidence).fit(raw, count_rows(layout.products))
    embedder.save()
    out = as_path(layout.curated_attributes)
    written = map_parts(partial(_curate_part, layout.attributes, out, _Transform(curator)), names, ray_cfg,
                        desc="vocab: curate")
    commit_parts(out, [part for part, _ in written], ATTRIBUTES)
    curated = merge_counts((counts for _, counts in written), CuratedCounts())
    return curator.build(curated), raw.stats, curated.stats


def run_vocab(cfg: VocabConfig, ray_cfg: Runtime[RayConfig], inputs: VocabInputs) -> VocabCounts:
    """Stage entry point: writes vocabulary/{vocabulary,attributes,merges,dropped}.parquet, versions, report."""
    layout = inputs.layout
    curator, raw, curated = curate(cfg, inputs, ray_cfg)
    folder = layout.dir("vocabulary")
    vocab = pa.Table.from_pylist(curator.vocab_, schema=VOCAB)
    write_table(vocab, layout.vocabulary, VOCAB)
    write_table(pa.Table.from_pylist(curator.merges_, schema=VOCAB_MERGES), folder / "merges.parquet", VOCAB_MERGES)
    write_table(pa.Table.from_pylist(curator.dropped_, schema=VOCAB_DROPPED), folder / "dropped.parquet", VOCAB_DROPPED)
    meta = {"created_at": datetime.now(timezone.utc).isoformat(), "config": cfg.model_dump(mode="json"),
            "decisions_applied": sorted(set(curator.decisions_applied_))}
    version, diff = write_version(folder, curator.vocab_, meta)
    report = build_report(curator, raw, curated, version)
    report["diff"] = diff["summary"]
    write_json(folder / "report.json", report)
    write_text(folder / "report.md", report_markdown(report))
    return {"version": version, "values": vocab.num_rows, "raw_distinct": report["raw"]["distinct_values"],
            "merged_clusters": report["clusters_merged"], "dropped": len(curator.dropped_),
            "curated_rows": curated.rows, "decisions_applied": report["review"]["applied"]}
