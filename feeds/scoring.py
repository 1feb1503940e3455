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


PROBE_SIZE = 2  # attributes a strict probe list requires: the topic's two rarest (one for single-attribute topics)
BOUND_MARGIN = 10.0 ** -SCORE_DECIMALS  # a K-th score must beat the bound by a rounding step (rounding never reorders)
PAIR_SHIFT = 1 << 32  # probe id: first attribute id x 2^32 + second (0 for a one-attribute probe)


def attribute_ids(topic_attrs: DataFrame) -> DataFrame:
    """(key, value, attr): a dense int id, from 1 in (key, value) order, of every attribute some topic names.
    Attributes no topic names never score, so they get none."""
    named = topic_attrs.select("key", "value").distinct()
    return named.withColumn("attr", F.row_number().over(Window.orderBy("key", "value")))


def _named(assignments: DataFrame, ids: DataFrame) -> DataFrame:
    """(product_id, attr, confidence) of the assignments whose attribute some topic names."""
    return assignments.join(F.broadcast(ids), ["key", "value"]).select("product_id", "attr", "confidence")


def product_maps(assignments: DataFrame, ids: DataFrame) -> DataFrame:
    """(product_id, pmap map<attr, confidence>) over the attributes of ``ids`` (:func:`attribute_ids`), keys in
    ascending order."""
    entries = F.sort_array(F.collect_list(F.struct("attr", "confidence")))
    return _named(assignments, ids).groupBy("product_id").agg(F.map_from_entries(entries).alias("pmap"))


def attribute_stats(assignments: DataFrame, ids: DataFrame) -> DataFrame:
    """(attr, freq, max_confidence) of every attribute of ``ids`` some product carries."""
    return _named(assignments, ids).groupBy("attr").agg(
        F.count(F.lit(1)).alias("freq"), F.max("confidence").alias("max_confidence"))


def strict_probes(topic_attrs: DataFrame, ids: DataFrame, stats: DataFrame, weights: ScoreWeights) -> DataFrame:
    """One row per topic for strict top-K scoring.

    Columns: ``probe`` (id of the topic's :data:`PROBE_SIZE` rarest attributes: fewest products, then key and
    value; the smaller attribute id x :data:`PAIR_SHIFT` plus the larger), ``pattrs`` (attr, w) of those sorted
    by attr, ``attrs`` (key, value, attr, w) of all its attributes sorted by (key, value), ``n_attrs``,
    ``topic_weight``, ``probe_weight`` (sum of the probe attributes' weights) and ``rest_max``: the most the
    attributes outside the probe can add (sum of weight x the best confidence any product has). A topic naming an attribute no product carries matches nothing and has
    no row."""
    df = topic_attrs.join(ids, ["key", "value"]).select(
        "topic_id", "key", "value", "n_attrs", "topic_weight", "attr", weights.column(F.col("key")).alias("w"))
    df = df.join(stats, "attr")
    rarest = Window.partitionBy("topic_id").orderBy(F.col("freq").asc(), "key", "value")
    df = df.withColumn("in_probe", F.row_number().over(rarest) <= PROBE_SIZE)
    pattrs = F.array_sort(F.collect_list(F.when(F.col("in_probe"), F.struct("attr", "w"))))
    per_topic = df.groupBy("topic_id", "n_attrs", "topic_weight").agg(
        F.array_sort(F.collect_list(F.struct("key", "value", "attr", "w"))).alias("attrs"), pattrs.alias("pattrs"),
        F.sum(F.when(F.col("in_probe"), F.lit(0.0)).otherwise(F.col("w") * F.col("max_confidence"))).alias("rest_max"),
        F.sum(F.when(F.col("in_probe"), F.col("w"))).alias("probe_weight"),
    )
    probe = (F.col("pattrs")[0]["attr"].cast("long") * F.lit(PAIR_SHIFT)
             + F.coalesce(F.get("pattrs", 1)["attr"], F.lit(0)))
    return per_topic.where(F.size("attrs") == F.col("n_attrs")).withColumn("probe", probe)


def _weighted(pmap: str, attrs: list[tuple[str, str]]) -> "F.Column":
    """sum of weight x the product's confidence over (attribute column, weight column) pairs, in that order;
    null when the product lacks one; a null attribute column (padding) adds 0."""
    total = F.lit(0.0)
    for attr, w in attrs:
        term = F.col(w) * F.element_at(pmap, F.col(attr))
        total = total + F.when(F.col(attr).isNull(), F.lit(0.0)).otherwise(term)
    return total


def _spread(array: str, prefix: str, width: int) -> list["F.Column"]:
    """An array of (attr, w) structs as columns {prefix}a0.., {prefix}w0.. (null past its end)."""
    return ([F.get(array, i)["attr"].alias(f"{prefix}a{i}") for i in range(width)]
            + [F.get(array, i)["w"].alias(f"{prefix}w{i}") for i in range(width)])


def postings(pmaps: DataFrame, probes: DataFrame) -> DataFrame:
    """The probes' posting lists: (probe, pos, product_id, partial, pmap) for every product carrying all of a
    probe's attributes; ``partial`` = sum of weight x confidence over them, ``pos`` the 1-based place in the list
    sorted by partial descending, product_id ascending (the head of a list holds its best products). Rows are
    hash-partitioned by probe, so whatever is ranked per (probe, topic) later needs no shuffle.
    A product's probes are found by arithmetic: each attribute id ``a`` of its map (keys ascending, see
    :func:`product_maps`) alone and with every later one ``b``, kept when some topic probes them (a broadcast
    semi-join), so no topic-product pair is built here. Two explodes, no lambda: the plan stays code-generated."""
    keys = F.map_keys("pmap")
    rows = pmaps.select("product_id", "pmap", F.posexplode(keys).alias("i", "a"))
    later = F.concat(F.array(F.lit(None).cast("int")), F.slice(keys, F.col("i") + 2, F.size(keys)))
    rows = rows.select("product_id", "pmap", "a", F.explode(later).alias("b"))
    rows = rows.select("product_id", "pmap",
                       (F.col("a").cast("long") * F.lit(PAIR_SHIFT) + F.coalesce("b", F.lit(0))).alias("probe"))
    kinds = probes.select("probe", "pattrs").dropDuplicates(["probe"])
    rows = rows.join(F.broadcast(kinds.select("probe", *_spread("pattrs", "p", PROBE_SIZE))), "probe")
    partial = _weighted("pmap", [(f"pa{i}", f"pw{i}") for i in range(PROBE_SIZE)])
    order = Window.partitionBy("probe").orderBy(F.col("partial").desc(), F.col("product_id").asc())
    return (rows.select("probe", "product_id", "pmap", partial.alias("partial"))
            .withColumn("pos", F.row_number().over(order)))


def score_postings(lists: DataFrame, topics: DataFrame, width: int, keep: tuple[str, ...] = ()) -> DataFrame:
    """Strict scores of posting rows against the topics that probe their list, each read down to its
    ``limit``: (probe, topic_id, product_id, overlap, score), terms added in the topic's (key, value) order;
    ``score`` is null where the product lacks an attribute of the topic. ``topics``: (probe, topic_id, n_attrs,
    topic_weight, attrs, limit, and the ``keep`` columns, passed through). Random access is a lookup in the product's map; no Python, no per-pair arrays
    (the plan is code-generated). Nulls are left to the caller: a filter on the score would be pushed into the
    join condition and compute every score twice."""
    side = topics.select("probe", "topic_id", "n_attrs", "topic_weight", "limit", *keep, *_spread("attrs", "", width))
    pairs = lists.join(F.broadcast(side), "probe").where(F.col("pos") <= F.col("limit"))
    total = _weighted("pmap", [(f"a{i}", f"w{i}") for i in range(width)])
    return pairs.select("probe", "topic_id", "product_id", F.col("n_attrs").alias("overlap"), *keep,
                        F.round(total / F.col("topic_weight"), SCORE_DECIMALS).alias("score"))


@dataclass(frozen=True)
class TopK:
    """Strict top-K feeds: ``ranked`` (topic_id, product_id, score, overlap, rank <= K), as :func:`rank` gives,
    and ``verdicts`` (topic_id, verdict, pairs): how each topic was settled (complete, bound or fallback) and
    how many candidate pairs it scored."""

    ranked: DataFrame
    verdicts: DataFrame


def list_cuts(lists: DataFrame, probes: DataFrame, targets: dict[str, int]) -> DataFrame:
    """Where each probe list is cut for each target position T (``targets``: name -> T): (probe, size, and per
    target ``end_{name}``, ``next_{name}``). The cut keeps the first T postings and those after them whose
    partial is within two rounding steps x the probe weight of the T-th's (ties and near-ties: a product tied
    with the T-th is never left outside); ``next`` is the best partial left outside (null: the whole list is
    kept, ``end`` = size)."""
    at = lists.groupBy("probe").agg(F.count(F.lit(1)).alias("size"), *(
        F.max(F.when(F.col("pos") == t, F.col("partial"))).alias(f"at_{name}") for name, t in targets.items()))
    weight = probes.select("probe", "probe_weight").dropDuplicates(["probe"])
    rows = lists.select("probe", "partial").join(F.broadcast(at.join(weight, "probe")), "probe")
    aggs = []
    for name in targets:
        inside = F.col("partial") >= F.col(f"at_{name}") - F.lit(2 * BOUND_MARGIN) * F.col("probe_weight")
        aggs += [F.count(F.when(inside, 1)).alias(f"end_{name}"),
                 F.max(F.when(~inside, F.col("partial"))).alias(f"next_{name}")]
    cuts = rows.groupBy("probe", "size").agg(*aggs)
    return cuts.select("probe", "size", *(c for name in targets for c in (
        F.when(F.col(f"next_{name}").isNull(), F.col("size")).otherwise(F.col(f"end_{name}")).alias(f"end_{name}"),
        F.col(f"next_{name}"))))


def topic_cuts(probes: DataFrame, lists: DataFrame, k: int, prefix: int) -> DataFrame:
    """``probes`` with ``size`` (of its list), ``limit`` and ``next``: where the topic's prefix ends and the best
    partial left outside it (null: the whole list is in it). The prefix is its list cut (:func:`list_cuts`)
    after the K-th posting where its probe holds all its attributes (``rest_max`` 0: the list order is then its
    score order, so the K best and their ties are its top K) and after the ``prefix``-th otherwise."""
    cuts = list_cuts(lists, probes, {"k": k, "prefix": prefix})
    df = probes.join(F.broadcast(cuts), "probe", "left")
    target = F.col("rest_max") == 0
    return df.select(*probes.columns, F.coalesce("size", F.lit(0)).alias("size"),
                     F.coalesce(F.when(target, F.col("end_k")).otherwise(F.col("end_prefix")), F.lit(0)).alias("limit"),
                     F.when(target, F.col("next_k")).otherwise(F.col("next_prefix")).alias("next"))


def prefix_verdicts(cuts: DataFrame, lists: DataFrame, width: int, k: int) -> DataFrame:
    """``cuts`` (:func:`topic_cuts`) with ``verdict``, ``pairs`` and ``limit`` (how far down its list the topic is
    ranked), from the matches in its prefix.

    ``complete``: the list ends within the prefix, every candidate is ranked. ``bound``: at least K prefix
    matches beat, by more than a rounding step, the best score a product outside the prefix can reach (its
    probe partial <= the best left outside, each other attribute's confidence <= that attribute's best), so
    no outside product can enter the top K or tie into it. ``fallback``: otherwise (fewer than K such
    matches): the whole list is ranked. Counting the matches above the bound needs no ranking."""
    bound = (F.col("next") + F.col("rest_max")) / F.col("topic_weight") + F.lit(BOUND_MARGIN)
    longer = cuts.where(F.col("next").isNotNull()).withColumn("bound", bound)
    above = score_postings(lists, longer, width, keep=("bound",)).groupBy("topic_id").agg(
        F.count(F.when(F.col("score") > F.col("bound"), 1)).alias("above"))
    df = cuts.join(above, "topic_id", "left")
    verdict = (F.when(F.col("next").isNull(), F.lit("complete"))
               .when(F.col("above") >= k, F.lit("bound")).otherwise(F.lit("fallback")))
    limit = F.when(verdict == "fallback", F.col("size")).otherwise(F.col("limit"))
    return df.select("topic_id", "probe", "n_attrs", "topic_weight", "attrs", verdict.alias("verdict"),
                     limit.alias("pairs"), limit.alias("limit"))


def strict_top_k(topic_attrs: DataFrame, assignments: DataFrame, weights: ScoreWeights, k: int,
                 prefix: int) -> TopK:
    """Each topic's exact top ``k`` under strict matching, scoring as few candidates as a threshold bound allows.

    A topic's candidates are the posting list of its probe (its two rarest attributes, :func:`postings`),
    sorted by their partial score. Its prefix (:func:`topic_cuts`: the first ``k`` and their ties where the
    probe holds all its attributes, else the first ``prefix``) is scored (random access: the product's
    attribute map) and counted against the bound (:func:`prefix_verdicts`); then each topic ranks its prefix,
    or its whole list where the bound is not met, within its probe's partition (no shuffle). Products lacking
    an attribute of the topic rank last (null score) and are dropped after ranking. Equals
    ``rank(score(candidates_naive(...)), k)``, product_id tie-break included. Each frame read more than once is
    kept: the posting lists cached (their partitioning by probe is what the ranking relies on), the small
    per-attribute and per-topic frames (ids, probes, cuts, verdicts) checkpointed locally, which also keeps
    the plans short (nested caches print each other's plans, and the strings grow with every level).
    """
    ids = attribute_ids(topic_attrs).localCheckpoint()
    probes = strict_probes(topic_attrs, ids, attribute_stats(assignments, ids), weights).localCheckpoint()
    width = int(probes.agg(F.max(F.size("attrs"))).first()[0] or 0)
    lists = postings(product_maps(assignments, ids), probes).cache()
    cuts = topic_cuts(probes, lists, k, prefix).localCheckpoint()
    verdicts = prefix_verdicts(cuts, lists, width, k).localCheckpoint()
    ranked = rank(score_postings(lists, verdicts, width), k, within="probe")
    return TopK(ranked.where(F.col("score").isNotNull()).drop("probe"), verdicts.select("topic_id", "verdict", "pairs"))


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


def rank(scored: DataFrame, max_products: int, within: str | None = None) -> DataFrame:
    """Keep each topic's top ``max_products``: score descending, ties broken by product_id ascending. ``within``:
    a column each topic has one value of, by which ``scored`` is already partitioned (no shuffle then)."""
    order = Window.partitionBy(*([within] if within else []), "topic_id").orderBy(F.col("score").desc(), F.col("product_id").asc())
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
