"""Driver memory of every stage against catalogue size: does any stage hold the catalogue?

    python benchmarks/bench_memory.py [--catalog ../shared/datasets/myntra] [--sizes 7680 30718]
        [--part-rows 2500] [--out runs/bench-memory] [--set key=value ...]

Runs the whole pipeline once per catalogue size (evenly spread slices of the real catalogue, merchant fields
only), every run with the same part size (``catalog.part_rows``), each stage in its own process
(``pinlanding stage NAME``), and prints each stage's peak resident memory: the ``ru_maxrss`` that
``os.wait4`` reports for that process and its waited-for children (Spark's JVM included when it exits
with the stage; Ray's workers are not children of the driver and are not counted: they scale out with
the cluster). A stage that holds per-product data on the driver peaks higher on the larger catalogue;
one that works a part at a time peaks at about the same level whatever the catalogue's size.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from standins import write_myntra_slice

from pinlanding.collections.pipeline import STAGES


def measure(catalog: Path, out: Path, part_rows: int, overrides: list[str]) -> dict[str, tuple[float, float]]:
    """``{stage: (peak MiB, seconds)}`` of one full run, each stage in a fresh process."""
    sets = [arg for o in [f"catalog.part_rows={part_rows}", *overrides] for arg in ("--set", o)]
    figures = {}
    for stage in STAGES:
        cmd = [str(Path(sys.executable).parent / "pinlanding"), "stage", stage.name, "--out", str(out),
               "--catalog", str(catalog), "--force", *sets]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"stage {stage.name} failed: rerun `{' '.join(cmd)}` to see why")
        figures[stage.name] = (usage.ru_maxrss / 1024, time.perf_counter() - start)
        print(f"{catalog.name} {stage.name}: {figures[stage.name][0]:,.0f} MiB, {figures[stage.name][1]:.0f} s", flush=True)
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
