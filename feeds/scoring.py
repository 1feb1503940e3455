"""Topic-product relevance in Spark: candidate generation (pruned or naive), scoring, ranking, conformity.

Every function here is a pure DataFrame -> DataFrame transform (no I/O, no session handling), so
tests run them on tiny frames and the benchmark times them on generated catalogues.

Frames:
- ``topic_attrs``: one row per (topic_id, key, value) with ``n_attrs`` (attributes of the topic),
  ``required`` (shared attributes a product needs) and ``topic_weight`` (sum of the topic's key weights);
  built from plain (topic_id, key, value) rows by :func:`topic_attributes`.
- ``assignments``: (product_id, key, value, confidence), one row per product attribute, built by
  :func:`clean_assignments`; ``products``: one row per product with its attribute array, built from them
  by :func:`product_attributes`.
- ``candidates``: one row per candidate (topic, product) pair: (topic_id, product_id, required,
  topic_weight, shared) where ``shared`` is the array of (key, value, confidence) both carry.
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


def topic_attributes(topics: DataFrame, weights: ScoreWeights, matching: str = "strict",
                     min_overlap: float = 1.0) -> DataFrame:
    """(topic_id, key, value) rows -> distinct attributes with ``n_attrs``, ``required`` and ``topic_weight``.

    ``required``: every attribute for strict matching; otherwise ``min_overlap`` attributes (>= 1) or that
    share of the topic's attributes (< 1, rounded up), clipped to [1, n_attrs].
    """
    if matching not in ("strict", "overlap", "ann"):
        raise ValueError(f"unknown matching '{matching}'; known: ['ann', 'overlap', 'strict']")
    df = topics.select(
        F.col("topic_id").cast("string").alias("topic_id"),
        F.lower(F.trim("key")).alias("key"), F.lower(F.trim("value")).alias("value"),
    ).where((F.length("key") > 0) & (F.length("value") > 0)).distinct()
    per_topic = Window.partitionBy("topic_id")
    df = df.withColumn("n_attrs", F.count(F.lit(1)).over(per_topic))
    if matching == "strict":
        need = F.col("n_attrs")
    elif min_overlap >= 1:
        need = F.lit(int(min_overlap))
    else:
        need = F.ceil(F.col("n_attrs") * F.lit(float(min_overlap)) - F.lit(1e-9))
    return (
        df.withColumn("required", F.least(F.col("n_attrs"), F.greatest(F.lit(1), need.cast("int"))))
        .withColumn("topic_weight", F.sum(weights.column(F.col("key"))).over(per_topic))
    )


def product_attributes(assignments: DataFrame) -> DataFrame:
    """One row per product: (product_id, pattrs array<struct<key, value, confidence>>)."""
    return assignments.groupBy("product_id").agg(
        F.collect_list(F.struct("key", "value", "confidence")).alias("pattrs"))


def _topic_arrays(topic_attrs: DataFrame) -> DataFrame:
    """One row per topic: required, topic_weight and tattrs array<struct<key, value>>."""
    return topic_attrs.groupBy("topic_id", "required", "topic_weight").agg(
        F.array_sort(F.collect_list(F.struct("key", "value"))).alias("tattrs"))


def _shared(pairs: DataFrame) -> DataFrame:
    """Candidate rows from (topic, product) rows carrying both attribute arrays: the attributes they share."""
    shared = F.filter("pattrs", lambda a: F.array_contains("tattrs", F.struct(a["key"], a["value"])))
    return pairs.select("topic_id", "product_id", "required", "topic_weight", shared.alias("shared"))


def _exploded(products: DataFrame) -> DataFrame:
    return products.select("product_id", "pattrs", F.explode("pattrs").alias("a")).select(
        "product_id", "pattrs", F.col("a.key").alias("key"), F.col("a.value").alias("value"))


def probe_attributes(topic_attrs: DataFrame, products: DataFrame) -> DataFrame:
    """Each topic's ``n_attrs - required + 1`` rarest attributes, with ``freq`` (products carrying it).

    Summing ``freq`` bounds the candidate pairs from above, exactly for strict matching (one probe per topic).
    """
    freq = _exploded(products).groupBy("key", "value").agg(F.count(F.lit(1)).alias("freq"))
    rarest = Window.partitionBy("topic_id").orderBy(F.col("freq").asc(), "key", "value")
    return (
        topic_attrs.join(freq, ["key", "value"], "left")
        .withColumn("freq", F.coalesce("freq", F.lit(0)))
        .withColumn("probe_rank", F.row_number().over(rarest))
        .where(F.col("probe_rank") <= F.col("n_attrs") - F.col("required") + 1)
    )


def candidates_pruned(topic_attrs: DataFrame, products: DataFrame) -> DataFrame:
    """Candidate pairs found by partitioning on attributes (a join on (key, value)), not a cross join.

    Minimum-overlap prefilter: a product sharing ``required`` of a topic's ``n`` attributes misses at most
    ``n - required``, so it carries at least one of any ``n - required + 1`` of them. Only those rarest
    "probe" attributes generate pairs, and a pair is kept only from the first probe the product carries,
    so every pair appears once with no shuffle. The topic side is small and broadcast; ``products`` comes
    from :func:`product_attributes`.
    """
    exploded = _exploded(products)
    probes = probe_attributes(topic_attrs, products)
    probe_lists = probes.groupBy("topic_id").agg(
        F.transform(F.array_sort(F.collect_list(F.struct("probe_rank", "key", "value"))),
                    lambda p: F.struct(p["key"], p["value"])).alias("probes"))
    topic_side = probes.select("topic_id", "key", "value").join(probe_lists, "topic_id").join(
        _topic_arrays(topic_attrs), "topic_id")
    pairs = exploded.join(F.broadcast(topic_side), ["key", "value"])
    carried = F.transform("pattrs", lambda a: F.struct(a["key"], a["value"]))
    first_probe = F.filter("probes", lambda p: F.array_contains(carried, p))[0]
    pairs = pairs.where(first_probe == F.struct("key", "value"))
    return _shared(pairs)


def candidates_naive(topic_attrs: DataFrame, products: DataFrame) -> DataFrame:
    """The same candidates through the naive topics x products cross join (the baseline)."""
    pairs = _topic_arrays(topic_attrs).crossJoin(products)
    return _shared(pairs).where(F.size("shared") > 0)


def score(candidates: DataFrame, weights: ScoreWeights) -> DataFrame:
    """Relevance per (topic, product): confidence-weighted shared attributes over the topic's total weight.

    Pairs sharing fewer than ``required`` attributes are dropped. Output columns:
    topic_id, product_id, overlap, score (in [0, 1], rounded to :data:`SCORE_DECIMALS`).
    """
    weighted = F.aggregate("shared", F.lit(0.0),
                           lambda acc, a: acc + weights.column(a["key"]) * a["confidence"])
    return candidates.where(F.size("shared") >= F.col("required")).select(
        "topic_id", "product_id", F.size("shared").alias("overlap"),
        F.round(weighted / F.col("topic_weight"), SCORE_DECIMALS).alias("score"),
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


def title_key(title: "F.Column") -> "F.Column":
    """A normalized product title: lowercase words of letters and digits, single-spaced."""
    words = F.regexp_replace(F.lower(F.coalesce(title, F.lit(""))), r"[^\p{L}\p{N}]+", " ")
    return F.trim(words)


def product_groups(products: DataFrame) -> DataFrame:
    """Near-identical products: (product_id, group_id), ``group_id`` the smallest product id of its group.

    ``products`` has product_id, brand, title, image_digest (null when the product has no readable photo).
    Products with the same brand and normalized title, or the same photo bytes, are one group; the closure
    runs two rounds (title, photo, title), which joins chains of up to three hops.
    """
    pid = F.col("product_id").cast("string")
    df = products.select(
        pid.alias("product_id"),
        F.concat_ws("|", title_key(F.col("brand")), title_key(F.col("title"))).alias("tkey"),
        F.coalesce(F.col("image_digest"), F.concat(F.lit("id:"), pid)).alias("ikey"),
    )
    by_title, by_image = Window.partitionBy("tkey"), Window.partitionBy("ikey")
    df = df.withColumn("g", F.min("product_id").over(by_title))
    df = df.withColumn("g", F.min("g").over(by_image))
    return df.select("product_id", F.min("g").over(by_title).alias("group_id"))


def collapse_variants(ranked: DataFrame, groups: DataFrame) -> DataFrame:
    """One row per group in each topic: its best-ranked product, with the others' ids (rank order) as ``variants``.

    ``ranked``: topic_id, product_id, score, rank; products missing from ``groups`` are their own group.
    Output: topic_id, product_id, score, rank (of the kept product), variants.
    """
    df = ranked.join(groups, "product_id", "left").withColumn("group_id", F.coalesce("group_id", "product_id"))
    members = F.array_sort(F.collect_list(F.struct("rank", "product_id", "score")))
    out = df.groupBy("topic_id", "group_id").agg(members.alias("m"))
    return out.select(
        "topic_id", F.col("m")[0]["product_id"].alias("product_id"), F.col("m")[0]["score"].alias("score"),
        F.col("m")[0]["rank"].alias("rank"),
        F.transform(F.slice("m", 2, F.greatest(F.size("m") - 1, F.lit(1))), lambda x: x["product_id"])
        .alias("variants"),
    )


def primary_values(assignments: DataFrame, keys: list[str]) -> DataFrame:
    """Each product's most confident value of each of ``keys``: (product_id, key, value)."""
    wanted = [k.strip().lower() for k in keys]
    best = Window.partitionBy("product_id", "key").orderBy(F.col("confidence").desc(), F.col("value").asc())
    return (assignments.where(F.col("key").isin(wanted)).withColumn("r", F.row_number().over(best))
            .where("r = 1").select("product_id", "key", "value"))


def diversify(ranked: DataFrame, topic_attrs: DataFrame, values: DataFrame, max_products: int,
              band: float = 0.0) -> DataFrame:
    """Re-rank each topic to interleave its sub-values: a product's ``level`` is its place among the topic's
    products sharing its value of a key the topic does not name (gender, colour, brand ... from ``values``),
    the largest over those keys (keys with one value in the feed left out); order by level, then the relevance
    rank. A broad topic ("trousers") then opens with the best of each gender and colour, not the first page of
    its largest narrower topic.

    ``ranked``: topic_id, product_id, rank (+ any columns, kept); ``topic_attrs``: topic_id, key;
    ``values``: product_id, key, value (see :func:`primary_values`). Keeps the top ``max_products`` with a new
    ``rank``. With ``band`` > 0 (and a ``score`` column) interleaving happens within score bands: products
    ``band`` or more below the feed's best score come after the better band, so diversity never puts a much
    less confident product on the first page.
    """
    if band > 0:  # bands first: interleaving happens inside each band
        best = F.max("score").over(Window.partitionBy("topic_id"))
        ranked = ranked.withColumn("band", F.floor((best - F.col("score")) / F.lit(float(band)) + F.lit(1e-9)))
    else:
        ranked = ranked.withColumn("band", F.lit(0))
    named = topic_attrs.select("topic_id", F.lower(F.trim("key")).alias("key")).distinct()
    pairs = ranked.select("topic_id", "product_id", "rank", "band").join(values, "product_id").join(
        named, ["topic_id", "key"], "left_anti")
    # a key with one value in the whole feed has nothing to interleave (its places would just be the ranks)
    varied = pairs.groupBy("topic_id", "key").agg(F.countDistinct("value").alias("n")).where("n > 1")
    pairs = pairs.join(varied.select("topic_id", "key"), ["topic_id", "key"], "left_semi")
    place = Window.partitionBy("topic_id", "band", "key", "value").orderBy("rank")
    levels = pairs.withColumn("level", F.row_number().over(place)).groupBy("topic_id", "product_id").agg(
        F.max("level").alias("level"))
    out = ranked.join(levels, ["topic_id", "product_id"], "left").withColumn("level", F.coalesce("level", F.lit(1)))
    order = Window.partitionBy("topic_id").orderBy(F.col("band").asc(), F.col("level").asc(), F.col("rank").asc())
    return (out.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= max_products)
            .drop("level", "band"))
