"""The feeds stage: every kept topic becomes a ranked feed of products, scored with Spark.

Recipe: read and validate topics -> score topic-product pairs in Spark (:mod:`pinlanding.feeds.scoring`)
-> optional embedding neighbours (ANN-style) -> rank -> collapse near-identical products into one card with
its variants -> interleave the sub-values a topic does not name -> drop thin and non-conforming feeds with a
reason -> merge feeds whose first page repeats a broader feed's (the dropped slug becomes an alias)
-> write ``feeds/feeds.parquet``, ``feeds/feeds.jsonl``, ``feeds/dropped.parquet``, ``feeds/summary.json``.
"""
from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Iterator, TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pinlanding.collections.artifacts import (AnyPath, arrow_source, as_path, is_remote, location, read_schema,
                                              read_table, write_json, write_table, write_text)
from pinlanding.collections.parts import iter_parts, part_files, select_rows
from pinlanding.collections.config import SparkConfig
from pinlanding.collections.schemas import ASSIGNMENTS, EMBEDDINGS, FEEDS, FEEDS_DROPPED, PRODUCTS, TOPICS
from pinlanding.collections.stage_inputs import StageInputs, artifact, decisions
from pinlanding.encoders.visual import image_digest  # the visual index groups variants by the same digest
from pinlanding.feeds import merch, scoring
from pinlanding.feeds.config import FeedsConfig
from pinlanding.vocab.config import VocabConfig
from pinlanding.vocab.decisions import load_review_state

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession


REASONS = ("missing_id", "duplicate_topic", "duplicate_slug", "no_attributes", "thin_feed", "category_nonconformity",
           "duplicate_feed", merch.WINDOW_REASON)


@dataclass(frozen=True)
class TopicSet:
    """Valid kept topics (one dict per topic) and the rows of those rejected during validation."""

    topics: list[dict[str, Any]]
    dropped: list[dict[str, Any]]


def validate_topics(table: pa.Table) -> TopicSet:
    """Keep ``status == kept`` topics that have an id, a unique slug and at least one non-empty attribute."""
    topics, dropped = [], []
    seen_ids: set[str] = set()
    seen_slugs: set[str] = set()
    for row in table.to_pylist():
        if (row.get("status") or "").strip().lower() != "kept":
            continue
        tid, slug = (row.get("topic_id") or "").strip(), (row.get("slug") or "").strip()
        base = {"topic_id": tid, "slug": slug, "title": row.get("title"), "size": None, "conformity": None}
        pairs = sorted({((a.get("key") or "").strip(), (a.get("value") or "").strip()) for a in row.get("attributes") or []
                        if a and (a.get("key") or "").strip() and (a.get("value") or "").strip()})
        if not tid or not slug:
            dropped.append({**base, "reason": "missing_id", "detail": "empty topic_id or slug"})
        elif tid in seen_ids:
            dropped.append({**base, "reason": "duplicate_topic", "detail": f"topic_id {tid!r} appears twice"})
        elif slug in seen_slugs:
            dropped.append({**base, "reason": "duplicate_slug", "detail": f"slug {slug!r} is used by another topic"})
        elif not pairs:
            dropped.append({**base, "reason": "no_attributes", "detail": "the topic has no non-empty attribute"})
        else:
            seen_ids.add(tid)
            seen_slugs.add(slug)
            topics.append({**row, "topic_id": tid, "slug": slug, "attributes": [{"key": k, "value": v} for k, v in pairs]})
    return TopicSet(topics, dropped)


def topic_frame(spark: "SparkSession", topics: list[dict[str, Any]]) -> "DataFrame":
    """(topic_id, key, value) rows of the validated topics, ready for :func:`scoring.topic_attributes`."""
    rows = [(t["topic_id"], a["key"], a["value"]) for t in topics for a in t["attributes"]]
    return spark.createDataFrame(rows, schema="topic_id string, key string, value string")


def score_topics(spark: "SparkSession", topics: list[dict[str, Any]], assignments: "DataFrame", cfg: FeedsConfig,
                 embeddings: AnyPath | None = None, groups: "DataFrame | None" = None) -> tuple["DataFrame", dict[str, Any]]:
    """Ranked (topic_id, product_id, score, rank, variants) rows of every topic, plus counts for the manifest.

    ``groups`` (product_id, group_id; see :func:`scoring.product_groups`) collapses near-identical products
    into one row whose ``variants`` lists the others; without it ``variants`` is empty. Strict matching with
    pruning ranks an exact top-K pool with a threshold bound (:func:`scoring.strict_top_k`) on catalogues of
    ``topk_min_products`` or more; smaller ones score every candidate (the same rows, sooner there)."""
    weights = scoring.ScoreWeights(cfg.key_weights)
    tattrs = scoring.topic_attributes(topic_frame(spark, topics), weights, cfg.matching, cfg.min_overlap).cache()
    counts: dict[str, Any] = {}
    if cfg.matching == "strict" and cfg.pruning and cfg.topk_prefix > 0 and (
            cfg.topk_min_products == 0
            or assignments.select("product_id").distinct().count() >= cfg.topk_min_products):
        top = scoring.strict_top_k(tattrs, assignments, weights, cfg.pool_size, cfg.topk_prefix * cfg.pool_size)
        counts.update(topk_counts(top.verdicts))
        return _finish(top.ranked, tattrs, assignments, cfg, groups), counts
    build = scoring.candidates_pruned if cfg.pruning else scoring.candidates_naive
    scored = scoring.score(build(tattrs, scoring.product_attributes(assignments)), weights)
    if cfg.matching == "ann":
        if embeddings is None:
            raise FileNotFoundError("feeds.matching=ann needs assignments/embeddings.parquet; run the assign stage "
                                    "or set feeds.matching to strict or overlap")
        seeds = scoring.rank(scored, cfg.ann.seeds).select("topic_id", "product_id").toPandas()
        similar = embedding_neighbours(seeds, embeddings, cfg)
        counts["ann_pairs"] = len(similar)
        sim_df = spark.createDataFrame(similar, schema="topic_id string, product_id string, similarity double")
        scored = scoring.blend(scored, sim_df, cfg.ann.weight)
    return _finish(scoring.rank(scored, cfg.pool_size), tattrs, assignments, cfg, groups), counts


def topk_counts(verdicts: "DataFrame") -> dict[str, Any]:
    """Manifest counts of strict top-K scoring: topics per verdict and candidate pairs scored."""
    from pyspark.sql import functions as F

    rows = verdicts.groupBy("verdict").agg(F.count(F.lit(1)).alias("topics"), F.sum("pairs").alias("pairs")).collect()
    return {"topk_topics": {r.verdict: int(r.topics) for r in sorted(rows)},
            "candidate_pairs": int(sum(r.pairs or 0 for r in rows))}


def _finish(ranked: "DataFrame", tattrs: "DataFrame", assignments: "DataFrame", cfg: FeedsConfig,
            groups: "DataFrame | None") -> "DataFrame":
    """The candidate pool (ranked rows) through variants and diversity: the feeds' ranked rows."""
    from pyspark.sql import functions as F

    pool = ranked.select("topic_id", "product_id", "score", "rank")
    if groups is not None:
        pool = scoring.collapse_variants(pool, groups)
    else:
        pool = pool.withColumn("variants", F.array().cast("array<string>"))
    pool = pool.cache()  # diversify reads it twice; scoring it again would double the stage's time
    values = scoring.primary_values(assignments, cfg.diversify_keys)
    return scoring.diversify(pool, tattrs, values, cfg.max_products, cfg.diversify_band)


def embedding_neighbours(seeds: Any, embeddings: AnyPath, cfg: FeedsConfig) -> list[tuple[str, str, float]]:
    """Nearest products to each topic's vector (the normalized mean of its top attribute matches' embeddings).

    The embeddings artifact is searched one part at a time with a ``pinlanding.encoders.index`` retrieval
    index (``feeds.ann.index`` / ``method``) and each topic keeps its ``neighbours`` best over all parts, so
    the driver holds one part and the topics' vectors, never every embedding. When the artifact holds
    several model versions, the one with the most products is used.
    """
    from pinlanding.encoders.index import INDEXES, embedding_matrix

    versions: Counter[str] = Counter()
    for _, part in iter_parts(embeddings, EMBEDDINGS, ["model_version"]):
        versions.update(part.column("model_version").to_pylist())
    if not versions:
        return []
    best = sorted(versions.items(), key=lambda kv: (-kv[1], str(kv[0])))[0][0]

    def vectors(table: pa.Table) -> tuple[list[str], np.ndarray]:
        table = table.filter(pc.equal(table["model_version"], best))
        matrix = embedding_matrix(table)
        return table.column("product_id").to_pylist(), matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)

    seed_ids, seed_matrix = vectors(select_rows(embeddings, EMBEDDINGS, "product_id", seeds["product_id"]))
    row = {pid: i for i, pid in enumerate(seed_ids)}
    groups: dict[str, list[int]] = {}
    for tid, pid in zip(seeds["topic_id"], seeds["product_id"]):
        if pid in row:
            groups.setdefault(tid, []).append(row[pid])
    tids = sorted(groups)
    if not tids:
        return []
    queries = np.stack([seed_matrix[groups[t]].mean(axis=0) for t in tids])
    best_found: dict[str, list[tuple[float, str]]] = {t: [] for t in tids}
    for _, part in iter_parts(embeddings, EMBEDDINGS):
        ids, matrix = vectors(part)
        if not ids:
            continue
        index = INDEXES.create(cfg.ann.index, method=cfg.ann.method, rerank=cfg.ann.rerank).fit(ids, matrix)
        found, sims = index.search(queries, min(cfg.ann.neighbours, len(ids)))
        for tid, pids, row_sims in zip(tids, found, sims):
            merged = best_found[tid] + [(float(sim), str(pid)) for pid, sim in zip(pids, row_sims)]
            best_found[tid] = sorted(merged, key=lambda x: (-x[0], x[1]))[:cfg.ann.neighbours]
    return [(tid, pid, sim) for tid in tids for sim, pid in best_found[tid] if sim >= cfg.ann.min_similarity]


def assemble(topics: list[dict[str, Any]], ranked: Any, conform: Any, cfg: FeedsConfig) -> tuple[list[dict], list[dict]]:
    """Turn ranked rows (with optional ``variants``) and conformity into feed records (rank order) and dropped records."""
    products: dict[str, list[dict[str, Any]]] = {}
    variants = ranked["variants"] if "variants" in ranked else [None] * len(ranked)
    for tid, pid, sc, var in zip(ranked["topic_id"], ranked["product_id"], ranked["score"], variants):
        products.setdefault(tid, []).append({"product_id": pid, "score": float(sc),
                                             "variants": [str(v) for v in var] if var is not None else []})
    conf = {r["topic_id"]: r for r in conform.to_dict("records")}
    feeds, dropped = [], []
    for t in topics:
        items = products.get(t["topic_id"], [])
        c = conf.get(t["topic_id"], {})
        value = c.get("conformity")
        value = None if value is None or value != value else float(value)  # NaN -> None
        base = {"topic_id": t["topic_id"], "slug": t["slug"], "title": t.get("title"), "size": len(items),
                "conformity": value}
        if len(items) < cfg.min_feed_size:
            dropped.append({**base, "reason": "thin_feed",
                            "detail": f"{len(items)} products < feeds.min_feed_size={cfg.min_feed_size}"})
        elif value is not None and value < cfg.min_conformity:
            dropped.append({**base, "reason": "category_nonconformity",
                            "detail": f"{value:.2f} of categorized products share majority {c.get('majority')!r} "
                                      f"< feeds.min_conformity={cfg.min_conformity}"})
        else:
            feeds.append({"topic_id": t["topic_id"], "slug": t["slug"], "title": t.get("title"),
                          "query": t.get("query"), "attributes": t["attributes"], "products": items,
                          "judge_score": t.get("judge_score"), "size": len(items), "aliases": [],
                          "support": t.get("support")})
    feeds.sort(key=lambda f: (-(f["judge_score"] if f["judge_score"] is not None else float("-inf")), f["topic_id"]))
    return feeds, dropped


def _priority(feed: dict[str, Any]) -> tuple:
    """Which of two duplicate feeds stays: more products (broader, more searched), fewer attributes, higher
    judge score, then slug."""
    support = feed.get("support") if feed.get("support") is not None else feed.get("size") or 0
    return (-support, len(feed.get("attributes") or []), -(feed.get("judge_score") or 0.0), feed["slug"])


def merge_duplicates(feeds: list[dict[str, Any]], page: int, share: float) -> tuple[list[dict], list[dict]]:
    """Merge feeds whose first ``page`` products repeat a broader feed's: ``share`` or more of the smaller first
    page is in the other's. Feeds are visited broadest first (:func:`_priority`); one that repeats a feed
    already kept is dropped (``duplicate_feed``) and its slug, with its own aliases, joins the kept feed's
    ``aliases``. Returns (kept feeds in their input order, dropped records)."""
    from scipy import sparse

    n = len(feeds)
    ids: dict[str, int] = {}
    rows, cols = [], []
    for i, f in enumerate(feeds):
        for p in f["products"][:page]:
            rows.append(i)
            cols.append(ids.setdefault(p["product_id"], len(ids)))
    m = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, max(len(ids), 1)))
    m.data[:] = 1.0  # a product counted once per page
    shared = (m @ m.T).tocsr()
    sizes = np.asarray(m.sum(axis=1)).ravel()
    order = sorted(range(n), key=lambda i: _priority(feeds[i]))
    rank = {i: r for r, i in enumerate(order)}
    kept: set[int] = set()
    into: dict[int, int] = {}
    for i in order:
        row = shared.getrow(i)
        hits = [(rank[j], j, v) for j, v in zip(row.indices, row.data)
                if j in kept and v >= share * min(sizes[i], sizes[j]) and min(sizes[i], sizes[j]) > 0]
        if hits:
            into[i] = min(hits)[1]
        else:
            kept.add(i)
    dropped = []
    for i, j in sorted(into.items(), key=lambda ij: rank[ij[0]]):
        f, k = feeds[i], feeds[j]
        k["aliases"] = list(k.get("aliases") or []) + [f["slug"]] + list(f.get("aliases") or [])
        n_shared = int(shared[i, j])
        dropped.append({"topic_id": f["topic_id"], "slug": f["slug"], "title": f.get("title"), "size": f["size"],
                        "conformity": None, "reason": "duplicate_feed",
                        "detail": f"{n_shared} of its first {int(sizes[i])} products are in the first {int(sizes[j])} "
                                  f"of {k['slug']!r} (>= feeds.duplicate_share={share}); merged there as an alias"})
    return [f for i, f in enumerate(feeds) if i in kept], dropped


def write_feeds(layout: Any, feeds: list[dict], dropped: list[dict]) -> None:
    """Write feeds.parquet, feeds.jsonl (one collection per line, products in rank order) and dropped.parquet."""
    write_table(pa.Table.from_pylist(feeds, schema=FEEDS), layout.feeds, FEEDS)
    lines = [json.dumps({name: f[name] for name in FEEDS.names}, ensure_ascii=False) for f in feeds]
    write_text(layout.feeds_jsonl, "".join(line + "\n" for line in lines))
    write_table(pa.Table.from_pylist(dropped, schema=FEEDS_DROPPED), layout.dir("feeds") / "dropped.parquet", FEEDS_DROPPED)


def load_assignments(spark: "SparkSession", layout: Any, cfg: FeedsConfig) -> "DataFrame":
    """Assignments of products that are in the catalogue, cleaned for scoring."""
    for path, schema in ((layout.assignments, ASSIGNMENTS), (layout.products, PRODUCTS)):
        read_schema(path, schema)  # existence and schema-version checks before Spark reads them
    ids = read_parquet(spark, layout.products).select("product_id")
    raw = read_parquet(spark, layout.assignments)
    return scoring.clean_assignments(raw, cfg.min_confidence).join(ids, "product_id", "left_semi")


def product_groups(spark: "SparkSession", layout: Any) -> "DataFrame":
    """(product_id, group_id) of the catalogue's near-identical products (see :func:`scoring.product_groups`);
    photos are hashed by the executors."""
    from pyspark.sql import functions as F

    digest = F.udf(lambda path: image_digest(path), "string")  # a lambda: Spark cannot read the hints
    products = read_parquet(spark, layout.products).select("product_id", "brand", "title", "image_path")
    return scoring.product_groups(products.withColumn("image_digest", digest("image_path"))).cache()


def read_parquet(spark: "SparkSession", path: str | AnyPath) -> "DataFrame":
    """A Parquet artifact (one file, or the committed parts of a part folder) as a DataFrame that the
    executors read themselves, never through the driver.

    Local (shared-mount) files go to Spark's reader, absolute (Spark resolves a relative path against its
    JVM's working directory, not Python's), listed one by one so that uncommitted parts are never read.
    Any other filesystem (``s3://``) has no Hadoop connector here (hadoop-aws is not on PyPI), so each task
    opens its row groups through fsspec: a DataFrame of (file, row group) rows, ``mapInArrow``. Executors
    need the store's credentials and endpoint (instance roles, or ``spark.executorEnv.AWS_*`` in ``spark.conf``).
    """
    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.types import StructField, StructType

    path = as_path(path)
    files = part_files(path)
    if not is_remote(path):
        return spark.read.parquet(*(location(f, absolute=True) for f in files))
    groups, arrow_schema = [], None
    for file in files:
        source, filesystem = arrow_source(file)
        with filesystem.open(source, "rb") as f:  # the footer only
            meta = pq.ParquetFile(f).metadata
        arrow_schema = arrow_schema or meta.schema.to_arrow_schema().remove_metadata()
        groups += [(source, i) for i in range(meta.num_row_groups)]
    schema = StructType([StructField(f.name, f.dataType, True)  # nullable, as Spark's own reader makes them
                         for f in from_arrow_schema(arrow_schema).fields])
    tasks = spark.createDataFrame(groups, "path string, row_group int").repartition(max(1, len(groups)))
    reader = partial(_read_row_groups, protocol=path.protocol, options=dict(path.storage_options),
                     schema=arrow_schema)
    return tasks.mapInArrow(reader, schema)


def _read_row_groups(batches: Iterator[pa.RecordBatch], protocol: str, options: dict[str, Any],
                     schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Executor side of :func:`read_parquet`: read the listed row groups through fsspec."""
    import fsspec

    fs = fsspec.filesystem(protocol, **options)
    for batch in batches:
        for file, group in zip(batch.column("path").to_pylist(), batch.column("row_group").to_pylist()):
            with fs.open(file, "rb") as f:
                table = pq.ParquetFile(f).read_row_group(group)
            yield from table.replace_schema_metadata(None).cast(schema).to_batches()


@dataclass(frozen=True)
class FeedsInputs(StageInputs):
    """The feeds stage reads the catalogue, the topics, the attribute graph (and embeddings) of ``assignments/``,
    the merchandising decisions, and the vocabulary with the value decisions (to follow renamed collections)."""

    outputs = ("feeds",)
    catalog: AnyPath = artifact("catalog")
    topics: AnyPath = artifact("topics")
    assignments: AnyPath = artifact("assignments")
    vocabulary: AnyPath = artifact("vocabulary")
    decisions: AnyPath = decisions("value", "merch")


class FeedsCounts(TypedDict, total=False):
    """The feeds' counts; the scoring and merchandising counts are there when there was something to score or
    merchandise."""

    topics_in: int
    feeds: int
    dropped: int
    dropped_by_reason: dict[str, int]
    products_per_feed_median: float
    distinct_products: int
    variants_collapsed: int
    distinct_products_with_variants: int
    aliases: int
    matching: str
    pruning: bool
    topk_topics: dict[str, int]
    candidate_pairs: int
    seconds: float
    ann_pairs: int
    merchandised: int
    outside_window: int
    urls_aliased: int
    urls_gone: int


def run_feeds(cfg: FeedsConfig, spark_cfg: SparkConfig, vocab: VocabConfig, inputs: FeedsInputs) -> FeedsCounts:
    """Stage entry point: topics + assignments (+ embeddings) -> feeds/ (see module docstring); ``vocab``: how the
    review decisions are normalized."""
    with warnings.catch_warnings():  # pyspark warns about pandas 3 on every Arrow transfer; it works here
        warnings.filterwarnings("ignore", message=".*pandas >= 3.0.0.*", category=FutureWarning)
        return _run_feeds(cfg, spark_cfg, vocab, inputs)


def _run_feeds(cfg: FeedsConfig, spark_cfg: SparkConfig, vocab: VocabConfig, inputs: FeedsInputs) -> FeedsCounts:
    from pinlanding.collections.engines import spark_session

    layout = inputs.layout
    start = time.perf_counter()
    topic_set = validate_topics(read_table(layout.topics, TOPICS))
    embeddings = layout.embeddings if cfg.matching == "ann" and layout.embeddings.exists() else None
    spark = spark_session(spark_cfg)
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    assignments = load_assignments(spark, layout, cfg).cache()
    if topic_set.topics:
        groups = product_groups(spark, layout) if cfg.variants else None
        ranked_df, extra = score_topics(spark, topic_set.topics, assignments, cfg, embeddings, groups)
        ranked_df = ranked_df.cache()
        ranked = ranked_df.select("topic_id", "product_id", "score", "rank", "variants").toPandas()
        conform = scoring.conformity(ranked_df, assignments, cfg.category_key).toPandas()
        ranked = ranked.sort_values(["topic_id", "rank"], kind="stable")
    else:
        import pandas as pd

        extra = {}
        ranked = pd.DataFrame({"topic_id": [], "product_id": [], "score": [], "rank": []})
        conform = pd.DataFrame({"topic_id": [], "conformity": []})
    spark.catalog.clearCache()
    feeds, dropped = assemble(topic_set.topics, ranked, conform, cfg)
    review = load_review_state(inputs.decisions, vocab.cluster.fold_plurals)
    # pins, exclusions, titles, publish windows
    feeds, scheduled, merch_counts = merch.merchandise(feeds, review, layout.products, cfg.max_products)
    feeds, merged = merge_duplicates(feeds, cfg.duplicate_page, cfg.duplicate_share)
    dropped = topic_set.dropped + dropped + scheduled + merged
    # old slugs -> aliases, gone ones -> tombstones
    merch_counts.update(merch.record_changes(layout, review, vocab.cluster.fold_plurals, feeds, merged))
    write_feeds(layout, feeds, dropped)
    reasons = {r: sum(d["reason"] == r for d in dropped) for r in REASONS}
    sizes = [f["size"] for f in feeds]
    counts = {
        "topics_in": len(topic_set.topics) + len(topic_set.dropped),
        "feeds": len(feeds),
        "dropped": len(dropped),
        "dropped_by_reason": {k: v for k, v in reasons.items() if v},
        "products_per_feed_median": float(np.median(sizes)) if sizes else 0.0,
        "distinct_products": len({p["product_id"] for f in feeds for p in f["products"]}),
        "variants_collapsed": sum(len(p.get("variants") or []) for f in feeds for p in f["products"]),
        "distinct_products_with_variants": len({v for f in feeds for p in f["products"]
                                                for v in [p["product_id"], *(p.get("variants") or [])]}),
        "aliases": sum(len(f["aliases"]) for f in feeds),
        "matching": cfg.matching,
        "pruning": cfg.pruning,
        "seconds": round(time.perf_counter() - start, 2),
        **extra,
        **merch_counts,
    }
    write_json(layout.dir("feeds") / "summary.json", counts)
    return counts


def read_feeds(layout: Any) -> list[dict[str, Any]]:
    """The published feeds as dicts (rank order preserved), for the site and the API."""
    return read_table(layout.feeds, FEEDS).to_pylist()

