"""Ingest throughput on the real dev catalogue (target: under 60 s for 30,718 products on 2 cores).

Usage: python benchmarks/bench_ingest.py [CATALOG]
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pinlanding.collections.config import CatalogConfig
from pinlanding.collections.ingest import ingest

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "myntra"


def main(catalog: Path) -> None:
    start = time.perf_counter()
    result = ingest(catalog, CatalogConfig(), progress=False)
    seconds = time.perf_counter() - start
    summary = result.summary()
    n = summary["products"] + summary["quarantined"]
    print(f"ingest: {n} records ({summary['products']} accepted, {summary['quarantined']} quarantined "
          f"{summary['quarantine_reasons']}) in {seconds:.1f} s = {n / seconds:,.0f} records/s "
          f"on {os.cpu_count()} cores; target < 60 s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT.resolve())
