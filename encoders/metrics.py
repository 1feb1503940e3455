"""Retrieval metrics of the Fashion200K-style protocol, computed from a score matrix."""
from __future__ import annotations

import numpy as np


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, 1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, 1)


def retrieval_metrics(scores: np.ndarray, positive: np.ndarray, k: int = 10) -> dict[str, float]:
    """``scores``/``positive`` are ``[products, attributes]``. Returns, at ``k``:

    - ``attr_to_product_recall``: share of attribute queries (with >= 1 positive product) whose top-k
      products hold at least one positive (Fashion200K's Recall@K), and ``attr_to_product_precision``;
    - ``product_to_attr_recall``: mean share of a product's positives found in its top-k attributes
      (out of min(k, positives)), and ``product_to_attr_hit``: share with at least one.
    """
    positive = positive.astype(bool)
    out: dict[str, float] = {}
    cols = np.flatnonzero(positive.any(0))
    if len(cols):
        top = _topk(scores[:, cols].T, k)
        hits = np.take_along_axis(positive[:, cols].T, top, 1)
        out["attr_to_product_recall"] = float(hits.any(1).mean())
        out["attr_to_product_precision"] = float(hits.mean())
        out["attr_queries"] = int(len(cols))
    rows = np.flatnonzero(positive.any(1))
    if len(rows):
        top = _topk(scores[rows], k)
        hits = np.take_along_axis(positive[rows], top, 1)
        denom = np.minimum(positive[rows].sum(1), top.shape[1])
        out["product_to_attr_recall"] = float((hits.sum(1) / denom).mean())
        out["product_to_attr_hit"] = float(hits.any(1).mean())
        out["product_queries"] = int(len(rows))
    return out
