"""Topic-product relevance in Spark: candidate generation (pruned or naive), scoring, ranking, conformity.

Every function here is a pure DataFrame -> DataFrame transform (no I/O, no session handling), so
tests run them on tiny frames and the benchmark times them on generated catalogues.

Frames:
- ``topic_attrs``: one row per (topic_id, key, value) with ``n_attrs`` (attributes of the topic),
  ``required`` (shared attributes a product needs) and ``topic_weight`` (sum of the topic's key weights);
  built by :func:`topic_attributes`.
- ``assignments``: (product_id, key, value, confidence), one row per product attribute; built by
  :func:`clean_assignments`.
- ``candidates``: one row per attribute a topic and a product share:
  (topic_id, product_id, key, value, confidence, required, topic_weight).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

SCORE_DECIMALS = 6  # scores are rounded so that summation order never changes a ranking


@dataclass(frozen=True)
class ScoreWeights:
    """How much each shared attribute counts: ``key_weights[key]`` (else ``default``) times its confidence."""

    key_weights: Mapping[str, float] = field(default_factory=dict)
    default: float = 1.0

    def column(self, key: "F.Column") -> "F.Column":
        """The weight of each row's attribute key, as a Spark column."""
        expr = F.lit(float(self.default))
        for name, weight in sorted(self.key_weights.items()):
            expr = F.when(key == F.lit(name), F.lit(float(weight))).otherwise(expr)
        return expr


def required_overlap(n_attrs: int, matching: str, min_overlap: float) -> int:
    """Shared attributes a product needs for a topic of ``n_attrs`` attributes."""
    if matching == "strict":
        return n_attrs
    need = int(min_overlap) if min_overlap >= 1 else int(-(-n_attrs * min_overlap // 1))  # ceil of the share
    return max(1, min(n_attrs, need))


def clean_assignments(assignments: DataFrame, min_confidence: float = 0.0) -> DataFrame:
    """Normalize keys/values, drop empty or low-confidence rows, keep the best confidence per attribute."""
    df = assignments.select(
        F.col("product_id").cast("string").alias("product_id"),
        F.lower(F.trim(F.col("key"))).alias("key"),
        F.lower(F.trim(F.col("value"))).alias("value"),
        F.coalesce(F.col("confidence").cast("double"), F.lit(1.0)).alias("confidence"),
    )
    df = df.where(F.col("product_id").isNotNull() & (F.length("key") > 0) & (F.length("value") > 0))
    df = df.where(F.col("confidence") >= F.lit(float(min_confidence)))
    return df.groupBy("product_id", "key", "value").agg(F.max("confidence").alias("confidence"))


def topic_attributes(topics: DataFrame, weights: ScoreWeights) -> DataFrame:
    """Add ``n_attrs`` and ``topic_weight`` to (topic_id, key, value, required) rows of distinct attributes."""
    df = topics.select(
        "topic_id", F.lower(F.trim("key")).alias("key"), F.lower(F.trim("value")).alias("value"), "required"
    ).distinct()
    per_topic = Window.partitionBy("topic_id")
    return (
        df.withColumn("n_attrs", F.count(F.lit(1)).over(per_topic))
        .withColumn("topic_weight", F.sum(weights.column(F.col("key"))).over(per_topic))
    )


def candidates_pruned(topic_attrs: DataFrame, assignments: DataFrame) -> DataFrame:
    """Shared attributes of candidate pairs, found by joining on (key, value) instead of a cross join.

    Minimum-overlap prefilter: a product sharing ``required`` of a topic's ``n`` attributes misses at most
    ``n - required``, so it carries at least one of any ``n - required + 1`` of them. Only those rarest
    "probe" attributes generate candidate pairs; the pairs are then completed with all shared attributes.
    """
    freq = assignments.groupBy("key", "value").agg(F.count(F.lit(1)).alias("freq"))
    rarest = Window.partitionBy("topic_id").orderBy(F.col("freq").asc(), "key", "value")
    probes = (
        topic_attrs.join(freq, ["key", "value"], "left")
        .withColumn("freq", F.coalesce("freq", F.lit(0)))
        .withColumn("probe_rank", F.row_number().over(rarest))
        .where(F.col("probe_rank") <= F.col("n_attrs") - F.col("required") + 1)
    )
    pairs = probes.join(assignments, ["key", "value"]).select("topic_id", "product_id").distinct()
    shared = pairs.join(topic_attrs, "topic_id").join(assignments, ["product_id", "key", "value"])
    return shared.select("topic_id", "product_id", "key", "value", "confidence", "required", "topic_weight")


def candidates_naive(topic_attrs: DataFrame, assignments: DataFrame) -> DataFrame:
    """The same shared attributes through the naive topics x products cross join (the baseline)."""
    topics = topic_attrs.groupBy("topic_id", "required", "topic_weight").agg(
        F.collect_list(F.struct("key", "value")).alias("tattrs")
    )
    products = assignments.groupBy("product_id").agg(
        F.collect_list(F.struct("key", "value", "confidence")).alias("pattrs")
    )
    pairs = topics.crossJoin(products)
    shared = pairs.select(
        "topic_id", "product_id", "required", "topic_weight",
        F.explode(F.filter("pattrs", lambda a: F.array_contains("tattrs", F.struct(a["key"], a["value"])))).alias("a"),
    )
    return shared.select("topic_id", "product_id", "a.key", "a.value", "a.confidence", "required", "topic_weight")


def score(candidates: DataFrame, weights: ScoreWeights) -> DataFrame:
    """Relevance per (topic, product): confidence-weighted shared attributes over the topic's total weight.

    Pairs sharing fewer than ``required`` attributes are dropped. Output columns:
    topic_id, product_id, overlap, score (in [0, 1], rounded to :data:`SCORE_DECIMALS`).
    """
    agg = candidates.groupBy("topic_id", "product_id", "required", "topic_weight").agg(
        F.countDistinct("key", "value").alias("overlap"),
        F.sum(weights.column(F.col("key")) * F.col("confidence")).alias("weighted"),
    )
    return agg.where(F.col("overlap") >= F.col("required")).select(
        "topic_id", "product_id", "overlap",
        F.round(F.col("weighted") / F.col("topic_weight"), SCORE_DECIMALS).alias("score"),
    )


def blend(scored: DataFrame, similar: DataFrame, weight: float) -> DataFrame:
    """ANN-style matching: union attribute matches with embedding neighbours (topic_id, product_id, similarity).

    score = (1 - weight) * attribute score + weight * similarity; a side that did not find the pair counts 0.
    """
    joined = scored.join(similar, ["topic_id", "product_id"], "full_outer")
    return joined.select(
        "topic_id", "product_id", F.coalesce("overlap", F.lit(0)).alias("overlap"),
        F.round(
            F.lit(1.0 - weight) * F.coalesce("score", F.lit(0.0)) + F.lit(weight) * F.coalesce("similarity", F.lit(0.0)),
            SCORE_DECIMALS,
        ).alias("score"),
    )


def rank(scored: DataFrame, max_products: int) -> DataFrame:
    """Keep each topic's top ``max_products``: score descending, ties broken by product_id ascending."""
    order = Window.partitionBy("topic_id").orderBy(F.col("score").desc(), F.col("product_id").asc())
    return scored.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= max_products)


def conformity(ranked: DataFrame, assignments: DataFrame, category_key: str) -> DataFrame:
    """Category agreement of each feed (as Pinterest's Flashlight): share of its products in the majority category.

    A product's category is its most confident ``category_key`` value. Output: topic_id, size, categorized,
    majority, conformity (null when no product of the feed has a category).
    """
    best = Window.partitionBy("product_id").orderBy(F.col("confidence").desc(), F.col("value").asc())
    category = (
        assignments.where(F.col("key") == F.lit(category_key.strip().lower()))
        .withColumn("r", F.row_number().over(best)).where("r = 1")
        .select("product_id", F.col("value").alias("category"))
    )
    labelled = ranked.select("topic_id", "product_id").join(category, "product_id", "left")
    counts = labelled.where(F.col("category").isNotNull()).groupBy("topic_id", "category").count()
    top = Window.partitionBy("topic_id").orderBy(F.col("count").desc(), F.col("category").asc())
    majority = counts.withColumn("r", F.row_number().over(top)).where("r = 1").select(
        "topic_id", F.col("category").alias("majority"), F.col("count").alias("majority_count")
    )
    sizes = labelled.groupBy("topic_id").agg(
        F.count(F.lit(1)).alias("size"), F.count("category").alias("categorized")
    )
    return sizes.join(majority, "topic_id", "left").select(
        "topic_id", "size", "categorized", "majority",
        F.when(F.col("categorized") > 0, F.col("majority_count") / F.col("categorized")).alias("conformity"),
    )
