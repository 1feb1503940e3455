"""The main job end to end on the real dev catalogue, with per-stage wall times (target: under 20 minutes).

Usage: python benchmarks/bench_pipeline.py [CATALOG] [OUT]   (OUT is wiped first: this measures a cold run)
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from pinlanding.collections.config import load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = (ROOT / ".." / "shared" / "datasets" / "myntra").resolve()


def main(catalog: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    manifest = Pipeline(load_config(), RunLayout(out), catalog=catalog).run()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    Pipeline(load_config(), RunLayout(out), catalog=catalog).run()
    warm = time.perf_counter() - start
    print(f"\nmain job on {catalog} ({os.cpu_count()} cores)")
    for name, entry in manifest["stages"].items():
        print(f"  {name:<10} {entry['seconds']:8.1f} s  {entry.get('counts', {}) if name == 'ingest' else ''}")
    print(f"  {'total':<10} {cold:8.1f} s cold (target < 1200 s); rerun with nothing changed: {warm:.1f} s")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]) if args else DEFAULT, Path(args[1]) if len(args) > 1 else ROOT / "runs" / "bench")
