"""Spark scoring: ranking formula, strict/overlap matching, pruning equivalence, conformity."""
from __future__ import annotations

import random

import pytest

from pinlanding.feeds import scoring

pytestmark = pytest.mark.slow  # starts Spark


def frames(spark, topics: list[tuple[str, str, str]], assignments: list[tuple[str, str, str, float]]):
    t = spark.createDataFrame(topics, "topic_id string, key string, value string")
    a = spark.createDataFrame(assignments, "product_id string, key string, value string, confidence double")
    return t, scoring.clean_assignments(a)


def ranked(spark, topics, assignments, *, pruned=True, matching="strict", min_overlap=1.0, weights=None, k=100):
    weights = weights or scoring.ScoreWeights()
    t, a = frames(spark, topics, assignments)
    tattrs = scoring.topic_attributes(t, weights, matching, min_overlap)
    build = scoring.candidates_pruned if pruned else scoring.candidates_naive
    out = scoring.rank(scoring.score(build(tattrs, scoring.product_attributes(a)), weights), k)
    return [(r.topic_id, r.rank, r.product_id, r.score, r.overlap) for r in out.orderBy("topic_id", "rank").collect()]


def test_score_weights_confidence_and_tie_break(spark):
    topics = [("t", "colour", "Red"), ("t", "category", "dress")]
    assignments = [
        ("a", "colour", "red", 0.5), ("a", "category", "dress", 1.0),
        ("b", "colour", "red", 1.0), ("b", "category", "dress", 0.5),
        ("c", "colour", " RED ", 1.0), ("c", "category", "dress", 1.0),
        ("e", "colour", "red", 1.0), ("e", "category", "dress", 0.7),
        ("d", "colour", "red", 1.0), ("d", "category", "dress", 0.7),
        ("d", "colour", "red", 0.2),  # duplicate attribute: the best confidence counts
        ("x", "colour", "red", 1.0),  # lacks the category: not a strict match
    ]
    rows = ranked(spark, topics, assignments, weights=scoring.ScoreWeights({"category": 2.0}))
    assert [(r[2], r[3]) for r in rows] == [
        ("c", 1.0), ("a", 0.833333), ("d", 0.8), ("e", 0.8), ("b", 0.666667)]  # d before e: product_id tie-break
    assert [r[1] for r in rows] == [1, 2, 3, 4, 5]


def test_overlap_matching_required_attributes(spark):
    topics = [("t", "colour", "red"), ("t", "category", "dress"), ("t", "gender", "women")]
    assignments = [("two", "colour", "red", 1.0), ("two", "category", "dress", 1.0),
                   ("one", "colour", "red", 1.0), ("all", "colour", "red", 1.0),
                   ("all", "category", "dress", 1.0), ("all", "gender", "women", 1.0)]
    assert [r[2] for r in ranked(spark, topics, assignments)] == ["all"]
    share = ranked(spark, topics, assignments, matching="overlap", min_overlap=0.5)  # ceil(1.5) = 2 of 3
    assert [(r[2], r[4]) for r in share] == [("all", 3), ("two", 2)]
    count = ranked(spark, topics, assignments, matching="overlap", min_overlap=1)
    assert [r[2] for r in count] == ["all", "two", "one"]


def test_unknown_matching_is_rejected(spark):
    t, _ = frames(spark, [("t", "k", "v")], [("p", "k", "v", 1.0)])
    with pytest.raises(ValueError, match="known: \\['ann', 'overlap', 'strict'\\]"):
        scoring.topic_attributes(t, scoring.ScoreWeights(), "fuzzy")


@pytest.mark.parametrize("matching,min_overlap", [("strict", 1.0), ("overlap", 0.5), ("overlap", 2)])
def test_pruned_equals_naive_top_k(spark, matching, min_overlap):
    rng = random.Random(7)
    values = {"colour": 4, "category": 5, "gender": 2, "pattern": 3}
    assignments = []
    for i in range(60):
        for key, n in values.items():
            if rng.random() < 0.85:
                assignments.append((f"p{i:02d}", key, f"{key}{min(rng.randrange(n), rng.randrange(n))}",
                                    rng.choice([0.5, 0.75, 1.0])))
    topics = []
    for t in range(25):
        for key in rng.sample(sorted(values), rng.randint(1, 3)):
            topics.append((f"t{t:02d}", key, f"{key}{rng.randrange(values[key])}"))
    pruned = ranked(spark, topics, assignments, matching=matching, min_overlap=min_overlap, k=5)
    naive = ranked(spark, topics, assignments, pruned=False, matching=matching, min_overlap=min_overlap, k=5)
    assert pruned == naive
    assert len({r[0] for r in pruned}) > 10  # most topics found products: the comparison is not vacuous


def test_prefilter_generates_fewer_pairs_than_cross_join(spark):
    assignments = [(f"p{i}", "colour", "red" if i < 3 else "blue", 1.0) for i in range(20)]
    assignments += [(f"p{i}", "category", "dress", 1.0) for i in range(20)]
    t, a = frames(spark, [("t", "colour", "red"), ("t", "category", "dress")], assignments)
    tattrs = scoring.topic_attributes(t, scoring.ScoreWeights())
    products = scoring.product_attributes(a)
    assert scoring.candidates_pruned(tattrs, products).count() == 3  # only the rare probe (red) generates pairs
    assert scoring.candidates_naive(tattrs, products).count() == 20


def test_conformity_is_majority_share(spark):
    t, a = frames(spark, [("t", "colour", "red")],
                  [(f"p{i}", "colour", "red", 1.0) for i in range(4)]
                  + [("p0", "category", "dress", 0.9), ("p0", "category", "shirt", 0.4),  # dress wins
                     ("p1", "category", "dress", 1.0), ("p2", "category", "shoes", 1.0)])
    tattrs = scoring.topic_attributes(t, scoring.ScoreWeights())
    top = scoring.rank(scoring.score(scoring.candidates_pruned(tattrs, scoring.product_attributes(a)),
                                     scoring.ScoreWeights()), 10)
    row = scoring.conformity(top, a, "Category").collect()[0]
    assert (row.size, row.categorized, row.majority) == (4, 3, "dress")
    assert row.conformity == pytest.approx(2 / 3)
