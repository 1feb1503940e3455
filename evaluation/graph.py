"""How the attribute graph compares with the labels: by source, its confidence's reliability, colour mix.

* ``by_source``: rows, share of the graph and precision against the labels for each ``source``
  (``extraction``, ``encoder``, ``extraction+encoder``), ``with_encoder`` (the last two together: every row the
  encoder assigned), and attributes per product with and without the encoder's rows.
* ``reliability``: the graph's rows in deciles of confidence; per decile, mean confidence beside the
  precision against the labels. Calibrated confidence means the two agree.
* ``colour_mix``: each colour's share of the graph's colour rows beside its share of the colour labels.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from pinlanding.encoders.metrics import reliability  # noqa: F401  (re-exported: the graph's table)
from pinlanding.evaluation.labels import Labels
from pinlanding.evaluation.mapping import canonical, family_of


def judged_rows(labels: Labels, graph: pa.Table) -> dict[str, np.ndarray]:
    """The graph's columns with ``correct``: 1 / 0 where the labels judge the row, -1 where they cannot."""
    cols = graph.select(["product_id", "key", "value", "confidence", "source"]).to_pydict()
    correct = np.array([{True: 1, False: 0, None: -1}[labels.judge_row(p, k, v)]
                        for p, k, v in zip(cols["product_id"], cols["key"], cols["value"])], dtype=np.int8)
    conf = np.array([1.0 if c is None else c for c in cols["confidence"]], dtype=float)
    return {"product_id": np.asarray(cols["product_id"], dtype=object), "key": np.asarray(cols["key"], dtype=object),
            "value": np.asarray(cols["value"], dtype=object), "source": np.asarray(cols["source"], dtype=object),
            "confidence": conf, "correct": correct}


def _precision(correct: np.ndarray) -> float | None:
    judged = correct >= 0
    return round(float(correct[judged].mean()), 4) if judged.any() else None


def by_source(rows: dict[str, np.ndarray], min_confidence: float = 0.0) -> dict[str, Any]:
    """Per source: rows, share, precision (rows at ``min_confidence`` or more, as feeds use them)."""
    keep = rows["confidence"] >= min_confidence
    src, correct = rows["source"][keep], rows["correct"][keep]
    n, products = int(keep.sum()), len(set(rows["product_id"][keep].tolist())) or 1
    out: dict[str, Any] = {"min_confidence": min_confidence, "rows": n, "precision": _precision(correct)}
    for s in sorted(set(src.tolist())):
        m = src == s
        out[s] = {"rows": int(m.sum()), "share": round(float(m.mean()), 4), "precision": _precision(correct[m])}
    # rows the encoder assigned, alone or agreeing with the extraction (the extraction's rows it confirmed)
    seen = np.array(["encoder" in s for s in src.tolist()], dtype=bool)
    out["with_encoder"] = {"rows": int(seen.sum()), "share": round(float(seen.mean()), 4) if n else 0.0,
                           "precision": _precision(correct[seen])}
    text = np.array(["extraction" in s for s in src.tolist()], dtype=bool)
    out["attributes_per_product"] = round(n / products, 3)
    out["extraction_per_product"] = round(int(text.sum()) / products, 3)
    return out


def colour_mix(labels: Labels, rows: dict[str, np.ndarray], family: str = "colour", min_confidence: float = 0.0,
               top: int = 15) -> dict[str, Any]:
    """Each colour's share of the graph's colour rows against its share of the products' colour labels,
    over the products that have a colour label; ``worst`` is the largest graph/label share ratio among
    colours with at least 0.5% of the graph. Values the labels never use are listed apart
    (``not_in_labels``): they have no labelled share to compare with."""
    truth = labels.values.get(family, {})
    keep = np.array([family_of(k) == family for k in rows["key"].tolist()], dtype=bool) \
        & (rows["confidence"] >= min_confidence)
    keep &= np.array([p in truth for p in rows["product_id"].tolist()], dtype=bool)
    label = Counter(v for vals in truth.values() for v in vals)

    def as_label(value: str) -> str:  # a shade the labels do not name counts as its base ("sky blue" -> blue)
        value = canonical(family, value)
        return value if value in label or value.split()[-1] not in label else value.split()[-1]

    graph = Counter(as_label(v) for v in rows["value"][keep].tolist())
    g_total, l_total = max(1, sum(graph.values())), max(1, sum(label.values()))
    table = [{"value": v, "graph_share": round(graph[v] / g_total, 4), "label_share": round(label[v] / l_total, 4),
              "ratio": round((graph[v] / g_total) / (label[v] / l_total), 2) if label[v] else None}
             for v, _ in (graph + label).most_common()]
    big = [r for r in table if r["graph_share"] >= 0.005 and r["ratio"] is not None]
    worst = max(big, key=lambda r: r["ratio"]) if big else None
    return {"rows": int(keep.sum()), "worst": worst, "over_1_5x": [r["value"] for r in big if r["ratio"] > 1.5],
            "not_in_labels": {r["value"]: r["graph_share"] for r in table if r["ratio"] is None},
            "table": table[:top]}
