"""Report stage and `pinlanding evaluate` timings on a real run (budget: report <= 60 s, evaluate <= 180 s).

Usage: python benchmarks/bench_eval.py [RUN_DIR] [LABELS]   (defaults: runs/dev, ../shared/datasets/myntra)
The run is left untouched: its stage folders are linked into a temporary run whose report/ is fresh.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from pinlanding.collections.config import load_config
from pinlanding.collections.layout import STAGE_DIRS, RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.evaluation.evaluate import run_evaluate
from pinlanding.evaluation.labels import read_labels
from pinlanding.evaluation.report import run_report

ROOT = Path(__file__).resolve().parents[1]


def main(run: Path, labels: Path) -> None:
    if not (run / "feeds" / "feeds.parquet").exists():
        sys.exit(f"{run} has no feeds/feeds.parquet yet; run the pipeline first (or pass another run folder)")
    cfg = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        for name in STAGE_DIRS:
            if name != "report" and (run / name).exists():
                os.symlink((run / name).resolve(), Path(tmp) / name)
        layout = RunLayout(tmp)
        t = time.perf_counter()
        counts = call_stage(run_report, cfg, layout)
        report_s = time.perf_counter() - t
        t = time.perf_counter()
        lab = read_labels(labels)
        labels_s = time.perf_counter() - t
        t = time.perf_counter()
        m = run_evaluate(cfg, layout, labels)
        eval_s = time.perf_counter() - t
    print(f"report stage: {report_s:.1f} s for {counts['products']} products, {counts['collections']} collections, "
          f"{counts['queries']} queries (budget 60 s)")
    print(f"labels: {lab.n_records} records read in {labels_s:.1f} s")
    print(f"evaluate: {eval_s:.1f} s incl. labels and the {m.get('baseline', {}).get('collections', 0)}-query "
          f"baseline (budget 180 s) on {os.cpu_count()} cores")
    print(f"P@{m['k']} content-first {m['collections']['precision']}, baseline "
          f"{(m.get('baseline') or {}).get('precision')}, attribute Recall@{m['k']} {m['attributes'].get('recall_at_k')}")


if __name__ == "__main__":
    run_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "dev"
    labels_path = Path(sys.argv[2]) if len(sys.argv) > 2 else (ROOT / ".." / "shared" / "datasets" / "myntra").resolve()
    main(run_dir.resolve(), labels_path)
