"""The search-log baseline: TF-IDF retrieval on title + tags, distinct queries, ties kept whole."""
from pinlanding.evaluation.baseline import _top, build_baseline, product_texts
from pinlanding.evaluation.intent import Lexicon

import numpy as np


def test_baseline_ranks_matching_titles_first():
    ids = ["a", "b", "c", "d"]
    texts = product_texts(["Red Dress", "Blue Dress", "Red Shirt", "Green Shoes"], [["dresses"], None, [], ["shoe"]])
    out = build_baseline(ids, texts, ["red dress", "Red dresses", "blue jeans", "???"], Lexicon.build(), k=2)
    by = {b.query: b for b in out}
    assert set(by) == {"red dress", "blue jeans"}  # "Red dresses" normalises to "red dress"; "???" is empty
    red = by["red dress"]
    assert red.queries == 2 and red.product_ids[0] == "a" and red.matched == 3
    assert red.intent == {("category", "dress"), ("colour", "red")}
    assert by["blue jeans"].product_ids == ["b"] and by["blue jeans"].matched == 1
    assert red.scores == sorted(red.scores, reverse=True)


def test_top_keeps_products_tied_with_the_kth():
    idx, data = _top(np.array([5, 3, 9, 1]), np.array([.2, .5, .5, .5]), k=2, max_ties=10)
    assert idx.tolist() == [1, 3, 9] and data.tolist() == [.5, .5, .5]
    idx, _ = _top(np.array([5, 3, 9, 1]), np.array([.2, .5, .5, .5]), k=2, max_ties=0)
    assert idx.tolist() == [1, 3]
