"""Driver memory of every stage against catalogue size: does any stage hold the catalogue?

    python benchmarks/bench_memory.py [--catalog ../shared/datasets/myntra] [--sizes 7680 30718]
        [--part-rows 2500] [--out runs/bench-memory] [--set key=value ...]

Runs the whole pipeline once per catalogue size (evenly spread slices of the real catalogue, merchant fields
only), every run with the same part size (``catalog.part_rows``), and prints each stage's peak resident
memory of this process, the driver: its high-water mark is reset before every stage (Linux
``/proc/self/clear_refs``). A stage that holds per-product data on the driver peaks higher on the larger
catalogue; one that works a part at a time peaks at about the same level whatever the catalogue's size.
Ray workers and the Spark JVM are other processes and are not counted (they scale out with the cluster).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from pinlanding.collections.catalog import write_myntra_slice
from pinlanding.collections.config import load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import Pipeline


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size


def peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def measure(catalog: Path, out: Path, part_rows: int, overrides: list[str]) -> dict[str, tuple[float, float]]:
    """``{stage: (peak MiB, seconds)}`` of one full run."""
    cfg = load_config(overrides=[f"catalog.part_rows={part_rows}", *overrides])
    pipeline = Pipeline(cfg, RunLayout(out), catalog=catalog, force=True)
    figures = {}
    for stage in pipeline.stages:
        if not stage.available():
            continue
        reset_peak()
        start = time.perf_counter()
        pipeline.run_stage(stage)
        figures[stage.name] = (peak_mib(), time.perf_counter() - start)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, default=Path("../shared/datasets/myntra"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[7680, 30718])
    ap.add_argument("--part-rows", type=int, default=2500)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-memory"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    results = {}
    for n in args.sizes:
        source = write_myntra_slice(args.catalog.resolve(), args.out / f"catalog-{n}", n) \
            if not (args.out / f"catalog-{n}").exists() else args.out / f"catalog-{n}"
        results[n] = measure(source, args.out / f"run-{n}", args.part_rows, args.overrides)
    sizes = list(results)
    print(f"\nDriver peak RSS per stage (MiB), catalog.part_rows={args.part_rows}; seconds in brackets")
    print("| stage | " + " | ".join(f"{n:,} products" for n in sizes) + " | growth |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for stage in results[sizes[0]]:
        cells = [f"{results[n][stage][0]:,.0f} ({results[n][stage][1]:.0f} s)" for n in sizes]
        growth = results[sizes[-1]][stage][0] - results[sizes[0]][stage][0]
        print(f"| {stage} | " + " | ".join(cells) + f" | {growth:+,.0f} MiB |")


if __name__ == "__main__":
    main()
