"""Ingest throughput: the real dev catalogue by default (target: under 60 s for 30,718 products on 2 cores), or
any catalogue, e.g. ``replicate.py --raw-out``'s copies at scale, by worker processes.

Usage: python benchmarks/bench_ingest.py [CATALOG] [--image-root DIR] [--workers 1,2]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from pinlanding.collections.config import CatalogConfig
from pinlanding.collections.ingest import default_workers, ingest

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "myntra"


def main(catalog: Path, image_root: str | None, workers: list[int | None]) -> None:
    cfg = CatalogConfig(image_root=image_root)
    for n_workers in workers:
        start = time.perf_counter()
        result = ingest(catalog, cfg, workers=n_workers, progress=False)
        seconds = time.perf_counter() - start
        summary = result.summary()
        n = summary["products"] + summary["quarantined"]
        print(f"ingest, {n_workers or default_workers()} worker processes: {n} records ({summary['products']} accepted, "
              f"{summary['quarantined']} quarantined {summary['quarantine_reasons']}) in {seconds:.1f} s = "
              f"{n / seconds:,.0f} records/s on {os.cpu_count()} cores; target < 60 s for the dev catalogue",
              flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalog", nargs="?", type=Path, default=DEFAULT.resolve())
    parser.add_argument("--image-root", help="folder relative image paths are resolved against")
    parser.add_argument("--workers", default="0", help="comma-separated process counts to time (0: the stage's default)")
    args = parser.parse_args()
    main(args.catalog, args.image_root, [int(w) or None for w in args.workers.split(",")])
