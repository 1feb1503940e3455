"""Ranking metrics as pure functions: Precision@K, Recall@K, hit rate@K (Fashion200K recall), NDCG@K.

Inputs are per-rank relevance values (1/0, or graded gains in [0, 1]) in ranked order. When
``scores`` are given, products with equal scores form a tie whose internal order is arbitrary, and
each metric returns its expected value over every order of the tie (McSherry & Najork, "Computing
information retrieval performance measures efficiently in the presence of tied scores", ECIR 2008).
A ranking with nothing in it has no precision: those functions return ``None`` so that empty feeds
are counted as not judged rather than as zero.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be a positive integer, got {k}")


def _groups(values: Sequence[float], scores: Sequence[float] | None) -> list[list[float]]:
    """Consecutive runs of equal score (each value its own group without scores)."""
    if scores is None:
        return [[float(v)] for v in values]
    if len(scores) != len(values):
        raise ValueError(f"scores has {len(scores)} entries for {len(values)} relevance values")
    pairs = list(zip(values, scores))
    return [[float(v) for v, _ in run] for _, run in groupby(pairs, key=lambda p: p[1])]


def _groups_above(values: Sequence[float], scores: Sequence[float] | None, k: int) -> Iterator[tuple[list[float], int]]:
    """The tie groups that start within the top ``k`` ranks, each with its 0-based first rank."""
    start = 0
    for group in _groups(values, scores):
        if start >= k:
            return
        yield group, start
        start += len(group)


def expected_hits_at_k(relevance: Sequence[float], k: int, scores: Sequence[float] | None = None) -> float:
    """Expected sum of relevance over the top ``k`` ranks (ties averaged)."""
    _check_k(k)
    return sum((sum(group) * min(len(group), k - start) / len(group)
                for group, start in _groups_above(relevance, scores, k)), 0.0)


def precision_at_k(relevance: Sequence[float], k: int, scores: Sequence[float] | None = None) -> float | None:
    """Relevant share of the top ``min(k, len)`` ranks; None for an empty ranking.

    A ranking shorter than ``k`` is divided by its length (a feed is judged on what it shows).
    """
    _check_k(k)
    if len(relevance) == 0:
        return None
    return expected_hits_at_k(relevance, k, scores) / min(k, len(relevance))


def recall_at_k(relevance: Sequence[float], k: int, n_relevant: int,
                scores: Sequence[float] | None = None) -> float | None:
    """Share of all ``n_relevant`` relevant items that appear in the top ``k``; None when there are none."""
    _check_k(k)
    if n_relevant <= 0:
        return None
    return min(1.0, expected_hits_at_k(relevance, k, scores) / n_relevant)


def hit_at_k(relevance: Sequence[float], k: int, scores: Sequence[float] | None = None) -> float | None:
    """Probability that at least one relevant item is in the top ``k`` (the Fashion200K Recall@K per query).

    With ties crossing the cutoff this is ``1 - C(n - r, m) / C(n, m)`` for the tie of ``n`` items,
    ``r`` of them relevant, of which ``m`` fit above the cutoff. None for an empty ranking.
    """
    _check_k(k)
    if len(relevance) == 0:
        return None
    for group, start in _groups_above([1.0 if v > 0 else 0.0 for v in relevance], scores, k):
        n, r, m = len(group), int(sum(group)), min(len(group), k - start)
        if r:
            return 1.0 - math.comb(n - r, m) / math.comb(n, m)
    return 0.0


def _discount(rank: int) -> float:
    """DCG discount of a 0-based rank."""
    return 1.0 / math.log2(rank + 2)


def dcg_at_k(gains: Sequence[float], k: int, scores: Sequence[float] | None = None) -> float:
    """Discounted cumulative gain ``sum gain_i / log2(i + 1)`` over ranks 1..k, ties averaged."""
    _check_k(k)
    return sum((sum(group) / len(group) * sum(_discount(r) for r in range(start, min(start + len(group), k)))
                for group, start in _groups_above(gains, scores, k)), 0.0)


def ndcg_at_k(gains: Sequence[float], k: int, scores: Sequence[float] | None = None,
              ideal: Iterable[float] | None = None) -> float | None:
    """DCG@k divided by the DCG@k of the ideal ranking.

    ``ideal`` is every gain available in the whole collection (the catalogue), sorted here; by
    default the ranking's own gains. None for an empty ranking or when the ideal DCG is 0.
    """
    _check_k(k)
    if len(gains) == 0:
        return None
    best = sorted(gains if ideal is None else ideal, reverse=True)[:k]
    idcg = dcg_at_k(best, k)
    if idcg <= 0:
        return None
    return min(1.0, dcg_at_k(gains, k, scores) / idcg)


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
