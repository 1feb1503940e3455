"""Retrieval metrics of the Fashion200K-style protocol from a score matrix, and a confidence reliability table."""
from __future__ import annotations

from typing import Any

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


def reliability(rows: dict[str, np.ndarray], bins: int = 10, min_rows: int = 200) -> list[dict[str, Any]]:
    """Judged rows in ``bins`` confidence bins of equal width: rows, mean confidence, precision, and the gap
    between them; ``ok`` when a bin with at least ``min_rows`` rows is within 0.05."""
    judged = rows["correct"] >= 0
    conf, correct = rows["confidence"][judged], rows["correct"][judged]
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf >= lo) & ((conf < hi) | (hi == 1.0))
        if not m.any():
            continue
        mean, prec = float(conf[m].mean()), float(correct[m].mean())
        out.append({"bin": f"{lo:.1f}-{hi:.1f}", "rows": int(m.sum()), "mean_confidence": round(mean, 4),
                    "precision": round(prec, 4), "gap": round(prec - mean, 4),
                    "ok": bool(m.sum() < min_rows or abs(prec - mean) <= 0.05)})
    return out
