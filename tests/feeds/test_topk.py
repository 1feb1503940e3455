"""Strict top-K with a threshold bound: equal to the naive cross join's top K, ties included; verdicts."""
from __future__ import annotations

import random

import pytest

from pinlanding.feeds import scoring

pytestmark = pytest.mark.slow  # starts Spark


def frames(spark, topics, assignments):
    t = spark.createDataFrame(topics, "topic_id string, key string, value string")
    a = spark.createDataFrame(assignments, "product_id string, key string, value string, confidence double")
    return t, scoring.clean_assignments(a)


def both(spark, topics, assignments, k, prefix, weights=None):
    """(pruned rows, naive rows, verdicts by topic) of strict top-``k`` scoring."""
    weights = weights or scoring.ScoreWeights()
    t, a = frames(spark, topics, assignments)
    tattrs = scoring.topic_attributes(t, weights)
    top = scoring.strict_top_k(tattrs, a, weights, k, prefix)
    naive = scoring.rank(scoring.score(scoring.candidates_naive(tattrs, scoring.product_attributes(a)), weights), k)

    def rows(df):
        return [(r.topic_id, r.rank, r.product_id, r.score, r.overlap) for r in df.orderBy("topic_id", "rank").collect()]

    verdicts = {r.topic_id: (r.verdict, r.pairs) for r in top.verdicts.collect()}
    return rows(top.ranked), rows(naive), verdicts


def test_verdicts_complete_bound_and_fallback(spark):
    assignments = []
    for i in range(10):  # "red": 10 products, confidence falling with i; all dresses, confidence 1.0
        assignments += [(f"p{i}", "colour", "red", 1.0 - i / 20), (f"p{i}", "category", "dress", 1.0)]
    assignments += [(f"q{i:02d}", "category", "dress", 0.5) for i in range(30)]  # more dresses than reds
    # women's: the two least confident reds but one and many others, so "women" is no 3-attribute topic's probe
    assignments += [(f"p{i}", "gender", "women", 1.0) for i in (7, 8)]
    assignments += [(f"w{i:02d}", "gender", "women", 1.0) for i in range(40)]
    topics = [("t_bound", "colour", "red"), ("t_bound", "category", "dress"),
              ("t_single", "colour", "red"),
              ("t_fallback", "colour", "red"), ("t_fallback", "category", "dress"), ("t_fallback", "gender", "women"),
              ("t_complete", "colour", "red"), ("t_complete", "gender", "women"),
              ("t_none", "colour", "red"), ("t_none", "colour", "mauve")]  # no product is mauve
    pruned, naive, verdicts = both(spark, topics, assignments, k=2, prefix=4)
    assert pruned == naive
    # probe red+dress holds all its attributes: the list order is its score order, the prefix is the first K (p0,
    # p1); the K-th score 0.975 beats the best outside (p2: 0.95)
    assert verdicts["t_bound"] == ("bound", 2)
    assert verdicts["t_single"] == ("bound", 2)  # probe red alone: 0.95 against 0.9
    # probe red+dress again, but "women" outside it: the prefix is the first 4 (prefix), none women's, so fewer
    # than K matches: the whole list is scored
    assert verdicts["t_fallback"] == ("fallback", 10)
    assert [r[2] for r in pruned if r[0] == "t_fallback"] == ["p7", "p8"]
    assert verdicts["t_complete"] == ("complete", 2)  # probe red+women: 2 products, no more than K
    assert "t_none" not in verdicts and not [r for r in pruned if r[0] == "t_none"]


def test_ties_at_the_cut_stay_in_the_prefix(spark):
    # every product has the same score: a product tied with the K-th is kept in the prefix, never left outside
    assignments = [(f"p{i:02d}", key, "x", 0.9) for i in range(20) for key in ("colour", "category")]
    assignments += [(f"p{i:02d}", "gender", "g", 0.8) for i in range(20)]
    assignments += [(f"q{i:02d}", "gender", "g", 0.8) for i in range(30)]  # "g" is no probe
    topics = [("t", "colour", "x"), ("t", "category", "x"), ("t3", "colour", "x"), ("t3", "category", "x"),
              ("t3", "gender", "g")]
    pruned, naive, verdicts = both(spark, topics, assignments, k=3, prefix=5)
    assert pruned == naive
    assert [r[2] for r in pruned if r[0] == "t"] == ["p00", "p01", "p02"]  # product_id breaks the tie
    assert verdicts["t"] == ("complete", 20) and verdicts["t3"] == ("complete", 20)


def test_an_attribute_outside_the_probe_can_lift_an_outside_product(spark):
    # probe colour+category (partials 1.8, 1.78, ... falling); the K best of the prefix are weak on gender, which
    # can add up to 1.0 outside it: the bound is not met, the whole list is ranked
    assignments = [(f"p{i:02d}", key, "x", 0.9 - i / 100) for i in range(6) for key in ("colour", "category")]
    assignments += [(f"p{i:02d}", "gender", "g", 1.0 if i >= 3 else 0.5) for i in range(6)]
    assignments += [(f"q{i:02d}", "gender", "g", 0.5) for i in range(30)]
    topics = [("t", "colour", "x"), ("t", "category", "x"), ("t", "gender", "g")]
    pruned, naive, verdicts = both(spark, topics, assignments, k=2, prefix=3)
    assert pruned == naive
    assert verdicts["t"] == ("fallback", 6)


def test_fewer_than_k_products(spark):
    assignments = [("a", "colour", "red", 0.9), ("a", "category", "dress", 0.8), ("b", "colour", "red", 0.7),
                   ("b", "category", "dress", 1.0), ("c", "colour", "red", 1.0)]
    topics = [("t", "colour", "red"), ("t", "category", "dress")]
    pruned, naive, verdicts = both(spark, topics, assignments, k=5, prefix=1)
    assert pruned == naive == [("t", 1, "a", 0.85, 2), ("t", 2, "b", 0.85, 2)]
    assert verdicts["t"] == ("complete", 2)


@pytest.mark.parametrize("k,prefix,seed", [(1, 1, 1), (3, 2, 2), (5, 10, 3), (10, 20, 4), (4, 8, 5)])
def test_pruned_top_k_equals_naive_on_random_catalogues(spark, k, prefix, seed):
    rng = random.Random(seed)
    values = {"colour": 3, "category": 4, "gender": 2, "pattern": 3}
    assignments = []
    for i in range(120):
        for key, n in values.items():
            if rng.random() < 0.9:  # coarse confidences: many ties
                assignments.append((f"p{i:03d}", key, f"{key}{min(rng.randrange(n), rng.randrange(n))}",
                                    rng.choice([0.5, 0.6, 0.8, 0.9, 1.0])))
        if rng.random() < 0.2:  # a second value of a key, as multi-valued colours
            assignments.append((f"p{i:03d}", "colour", f"colour{rng.randrange(3)}", rng.choice([0.7, 1.0])))
    topics = []
    for t in range(30):
        for key in rng.sample(sorted(values), rng.randint(1, 3)):
            topics.append((f"t{t:02d}", key, f"{key}{rng.randrange(values[key])}"))
    weights = scoring.ScoreWeights({"category": 2.0, "gender": 0.5})
    pruned, naive, verdicts = both(spark, topics, assignments, k, prefix, weights)
    assert pruned == naive
    assert len({r[0] for r in pruned}) > 15  # most topics found products: the comparison is not vacuous
    assert {v for v, _ in verdicts.values()} - {"complete"}  # the prefix decided some topics
