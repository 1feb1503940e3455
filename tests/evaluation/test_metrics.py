"""Each metric on hand-computed rankings: plain, ties across the cutoff, empty, short."""
import math

import pytest

from pinlanding.evaluation import metrics as M

L2, L3 = 1 / math.log2(3), 1 / math.log2(4)


def test_precision_plain_short_and_empty():
    assert M.precision_at_k([1, 0, 1, 1], 2) == 0.5
    assert M.precision_at_k([1, 0, 1, 1], 4) == 0.75
    assert M.precision_at_k([1, 0], 10) == 0.5  # a short feed is judged on what it shows
    assert M.precision_at_k([], 10) is None  # an empty feed is not judged


def test_precision_ties_across_the_cutoff_average_every_order():
    # group 1: [1]; group 2 (tied): [1, 0, 0] with one slot left -> 1/3 expected
    assert M.precision_at_k([1, 1, 0, 0], 2, scores=[.9, .5, .5, .5]) == pytest.approx((1 + 1 / 3) / 2)
    # order inside the tie does not matter
    assert M.precision_at_k([1, 0, 0, 1], 2, scores=[.9, .5, .5, .5]) == pytest.approx((1 + 1 / 3) / 2)
    # without scores the given order decides
    assert M.precision_at_k([1, 0, 0, 1], 2) == 0.5


def test_recall():
    assert M.recall_at_k([1, 0, 1], 2, n_relevant=4) == 0.25
    assert M.recall_at_k([1, 1, 1], 3, n_relevant=2) == 1.0
    assert M.recall_at_k([1], 3, n_relevant=0) is None
    assert M.recall_at_k([0, 1, 1], 1, n_relevant=2, scores=[1, 1, 1]) == pytest.approx((2 / 3) / 2)


def test_hit_rate_with_ties():
    assert M.hit_at_k([0, 0, 1], 2) == 0.0
    assert M.hit_at_k([0, 1, 0], 2) == 1.0
    # 4 tied, 1 relevant, 2 slots: 1 - C(3,2)/C(4,2) = 1/2
    assert M.hit_at_k([0, 1, 0, 0], 2, scores=[1, 1, 1, 1]) == pytest.approx(0.5)
    assert M.hit_at_k([], 2) is None


def test_dcg_and_ndcg():
    assert M.dcg_at_k([0, 1], 2) == pytest.approx(L2)
    assert M.ndcg_at_k([0, 1], 2) == pytest.approx(L2)  # ideal is [1, 0]
    assert M.ndcg_at_k([1, 0], 2) == pytest.approx(1.0)
    # a tie of the two: mean gain 0.5 at both ranks
    assert M.ndcg_at_k([0, 1], 2, scores=[.5, .5]) == pytest.approx(0.5 * (1 + L2))
    # the catalogue holds three fully relevant products: ideal DCG@2 is 1 + L2
    assert M.ndcg_at_k([1, 0], 2, ideal=[1, 1, 1]) == pytest.approx(1 / (1 + L2))
    # graded gains
    assert M.ndcg_at_k([0.5, 1, 0], 3) == pytest.approx((0.5 + L2) / (1 + 0.5 * L2))
    assert M.ndcg_at_k([0, 0], 2) is None
    assert M.ndcg_at_k([], 2) is None


def test_mean_and_bad_k():
    assert M.mean([None, 1.0, 0.0]) == 0.5
    assert M.mean([None]) is None
    with pytest.raises(ValueError, match="positive"):
        M.precision_at_k([1], 0)
    with pytest.raises(ValueError, match="scores"):
        M.precision_at_k([1, 0], 1, scores=[1.0])
