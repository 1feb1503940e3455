"""Precision of the embedded extractor's text rules against the dev labels, with and without the description
filter that leaves out care instructions, disclaimers and styling advice (``rules.without_boilerplate``).

    python benchmarks/bench_rules.py [--products RUN/catalog/products.parquet] [--labels ../shared/datasets/myntra]

Runs :func:`pinlanding.vocab.extractors.embedded.text_attributes` (the per-product rules, no image colours and
no catalogue-level refine) over every product of a run's catalogue twice: as the stage does, and with the
filter switched off (an ablation: the description is matched whole). Prints, per key, the rows found, the rows
found outside the title, and the precision of those the labels judge (the evaluation's own mapping,
``Labels.judge_row``). Only this script reads the labels; the rules never do.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa

from pinlanding.collections.artifacts import read_table
from pinlanding.collections.schemas import PRODUCTS
from pinlanding.evaluation.labels import Labels, read_labels
from pinlanding.vocab.extractors import rules
from pinlanding.vocab.extractors.embedded import text_attributes
from pinlanding.vocab.extractors.prepare import prepare_batch

REPO = Path(__file__).resolve().parents[1]
KEYS = ("pattern", "material", "color", "fit", "sleeve", "neck")


def rows_of(products: pa.Table) -> list[dict]:
    """The catalogue's products prepared as the extract stage prepares them (no image work)."""
    batch = prepare_batch(products.to_pydict(), image_mode="none")
    return [dict(zip(batch, values)) for values in zip(*batch.values())]


def judge(rows: list[dict], labels: Labels) -> dict[str, dict[str, float]]:
    """Per key: rows, rows outside the title, and the judged precision of those."""
    out: dict[str, dict[str, float]] = {}
    found = [(row["product_id"], a) for row in rows for a in text_attributes(row)[0]]
    for key in KEYS:
        mine = [(pid, a) for pid, a in found if a.key == key]
        outside = [(pid, a) for pid, a in mine if a.source != "title"]
        verdicts = [labels.judge_row(pid, key, a.value) for pid, a in outside]
        judged = np.array([v for v in verdicts if v is not None], dtype=float)
        out[key] = {"rows": len(mine), "outside_title": len(outside), "judged": len(judged),
                    "precision": round(float(judged.mean()), 3) if len(judged) else float("nan")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=Path, default=REPO / "runs" / "myntra" / "catalog" / "products.parquet")
    ap.add_argument("--labels", type=Path, default=REPO / ".." / "shared" / "datasets" / "myntra")
    args = ap.parse_args()
    rows = rows_of(read_table(args.products, PRODUCTS))
    labels = read_labels(args.labels)
    filtered = judge(rows, labels)
    with mock.patch.object(rules, "without_boilerplate", lambda text: text):
        whole = judge(rows, labels)
    print(f"{len(rows)} products; rows found outside the title, precision against the labels")
    print(f"{'key':10s} {'whole description':>28s} {'boilerplate left out':>28s}")
    for key in KEYS:
        a, b = whole[key], filtered[key]
        print(f"{key:10s} {a['outside_title']:>12,d} rows  P {a['precision']:.3f}   "
              f"{b['outside_title']:>12,d} rows  P {b['precision']:.3f}")


if __name__ == "__main__":
    main()
