"""Back-of-envelope time and cost of the main job for 1M, 100M and 1B products, from figures measured here.

    python benchmarks/bench_scale.py [--manifest runs/dev/manifest.json ...] [--cores 2] [--results benchmarks/RESULTS.md]
        [--gpu STAGE=PRODUCTS_PER_S[:SOURCE] ...] [--train-cap N] [--cluster-cores 512] [--cluster-gpus 16]
        [--core-hour-usd 0.04] [--gpu-hour-usd 2.50] [--cache-lookup-us 1.35 --part-rows 10000]

Measured inputs (nothing here is guessed):

- **per core**: each stage's wall seconds in a run's ``manifest.json`` (default: the reference run of the dev
  catalogue, ``runs/dev``; give several with ``--manifest`` to fill stages the first lacks), times the cores
  of the machine that ran it (``--cores``; default this machine's), divided by that run's products:
  core-seconds per product. The dev run shares 2 cores with other work, so
  these figures overstate the cost per core, if anything.
- **per GPU**: products per second per GPU of the model stages, from ``benchmarks/RESULTS.md`` lines that name
  a stage and ``products/s per GPU`` (or given with ``--gpu``); the script prints the line each came from.
- **extract's cache lookup**, the one term that is not linear: each catalogue part scans the whole result
  cache, so it costs parts x cache rows x ``--cache-lookup-us`` (core-microseconds per cache row per part,
  measured by ``benchmarks/bench_cache_lookup.py``), with the cache as large as the catalogue and
  ``--part-rows`` products a part. Left out (and said so) when the flag is not given.

Assumptions (printed with the table, change them with the flags): every stage scales linearly in products
(attributes, topics candidates and feed pairs grow with the catalogue; training at most linearly), cores and
GPUs scale out perfectly (a lower bound on wall time), and the prices are list-price placeholders, not
measurements.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1_000_000, 100_000_000, 1_000_000_000)
MODEL_STAGES = ("extract", "train", "assign")  # stages a GPU pool runs when one is there
_GPU_LINE = re.compile(r"\b(extract|train|assign)\b.*?([\d][\d,]*(?:\.\d+)?)\s*products?/s(?:ec)?\s*(?:per|/)\s*GPU",
                       re.IGNORECASE)


@dataclass(frozen=True)
class StageRate:
    stage: str
    core_s_per_product: float
    source: str


def run_products(manifest: Path) -> int:
    """Products of the run a manifest belongs to: its ingest count, else its catalogue's row count."""
    counts = json.loads(manifest.read_text()).get("stages", {}).get("ingest", {}).get("counts", {})
    if counts.get("products"):
        return int(counts["products"])
    products = manifest.parent / "catalog" / "products.parquet"
    if products.exists():
        from pinlanding.collections.parts import count_rows

        return count_rows(products)
    raise ValueError(f"{manifest}: no ingest count and no catalog/products.parquet beside it")


def core_rates(manifests: list[Path], cores: int) -> list[StageRate]:
    """Core-seconds per product of every stage, each from the first manifest (in the order given) that
    recorded it."""
    rates: dict[str, StageRate] = {}
    for manifest in manifests:
        stages = json.loads(manifest.read_text()).get("stages", {})
        todo = {name: e for name, e in stages.items() if "seconds" in e and name not in rates}
        if not todo:
            continue
        products = run_products(manifest)
        shown = manifest.relative_to(ROOT) if manifest.is_relative_to(ROOT) else manifest
        for name, entry in todo.items():
            rates[name] = StageRate(name, entry["seconds"] * cores / products,
                                    f"{shown}: {entry['seconds']:.1f} s x {cores} cores / {products:,} products")
    order = ("ingest", "extract", "vocab", "train", "assign", "topics", "feeds", "site", "report")
    return sorted(rates.values(), key=lambda r: order.index(r.stage) if r.stage in order else len(order))


def gpu_rates(results: Path, given: list[str]) -> dict[str, tuple[float, str]]:
    """Products/s per GPU by stage: from RESULTS.md lines, overridden by ``STAGE=VALUE`` arguments."""
    rates: dict[str, tuple[float, str]] = {}
    if results.exists():
        for number, line in enumerate(results.read_text(encoding="utf-8").splitlines(), 1):
            match = _GPU_LINE.search(line)
            if match:
                rates[match.group(1).lower()] = (float(match.group(2).replace(",", "")),
                                                 f"{results.name}:{number}: {line.strip()[:100]}")
    for item in given:
        stage, _, rest = item.partition("=")
        value, _, note = rest.partition(":")
        if stage not in MODEL_STAGES or not value:
            raise ValueError(f"--gpu takes STAGE=PRODUCTS_PER_S[:SOURCE] with STAGE in {list(MODEL_STAGES)}, "
                             f"got {item!r}")
        rates[stage] = (float(value), f"--gpu: {note}" if note else "--gpu")
    return rates


def human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def lookup_core_s(n: int, args: argparse.Namespace) -> float:
    """Core-seconds of extract's cache lookups for ``n`` products: parts x cache rows (= n) x the measured cost."""
    if not args.cache_lookup_us:
        return 0.0
    return -(-n // args.part_rows) * n * args.cache_lookup_us * 1e-6


def table(rates: list[StageRate], gpu: dict[str, tuple[float, str]], args: argparse.Namespace) -> list[str]:
    """The printed table: a CPU-only row and, when GPU figures exist, a GPU-for-model-stages row, per size."""
    def per_product(n: int, stage: str, value: float) -> float:  # training may be capped to a sample
        cap = args.train_cap if stage == "train" and args.train_cap else n
        return value * min(n, cap) / n

    lines = [f"{'products':>14} | {'plan':<40} | {'core-h':>10} | {'GPU-h':>9} | {'wall':>9} | {'cost USD':>10}",
             "-" * 106]
    for n in SIZES:
        lookup = lookup_core_s(n, args) / n  # on CPUs in both plans
        cpu_total = sum(per_product(n, r.stage, r.core_s_per_product) for r in rates) + lookup
        cpu_rest = sum(per_product(n, r.stage, r.core_s_per_product) for r in rates if r.stage not in gpu) + lookup
        gpu_s = sum(per_product(n, stage, 1.0 / v) for stage, (v, _) in gpu.items())  # GPU-seconds per product
        core_h = n * cpu_total / 3600
        wall = n * cpu_total / args.cluster_cores
        lines.append(f"{n:>14,} | {f'CPU only, {args.cluster_cores} cores':<40} | {core_h:>10,.0f} | {'-':>9} | "
                     f"{human(wall):>9} | {core_h * args.core_hour_usd:>10,.0f}")
        if gpu:
            core_h = n * cpu_rest / 3600
            gpu_h = n * gpu_s / 3600
            wall = max(n * cpu_rest / args.cluster_cores, n * gpu_s / args.cluster_gpus)  # the pools overlap
            plan = f"{args.cluster_gpus} GPUs ({'+'.join(sorted(gpu))}) + {args.cluster_cores} cores"
            lines.append(f"{'':>14} | {plan:<40} | {core_h:>10,.0f} | {gpu_h:>9,.0f} | {human(wall):>9} | "
                         f"{core_h * args.core_hour_usd + gpu_h * args.gpu_hour_usd:>10,.0f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, action="append",
                        help="a run's manifest.json (repeatable; a stage's figure comes from the first that has it); "
                             "default runs/dev/manifest.json")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores of the machine that made it")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--gpu", action="append", default=[],
                        help="STAGE=PRODUCTS_PER_S[:SOURCE] per GPU, measured (SOURCE is printed with it)")
    parser.add_argument("--train-cap", type=int, default=None,
                        help="products the encoder trains on at most (encoder.max_train_products); default: all")
    parser.add_argument("--cluster-cores", type=int, default=512)
    parser.add_argument("--cluster-gpus", type=int, default=16)
    parser.add_argument("--cache-lookup-us", type=float, default=None,
                        help="extract's cache lookup, core-us per cache row per part (benchmarks/bench_cache_lookup.py)")
    parser.add_argument("--part-rows", type=int, default=10_000, help="catalog.part_rows of the projected runs")
    parser.add_argument("--core-hour-usd", type=float, default=0.04, help="price placeholder, not measured")
    parser.add_argument("--gpu-hour-usd", type=float, default=2.50, help="price placeholder, not measured")
    args = parser.parse_args()

    rates = core_rates(args.manifest or [ROOT / "runs" / "dev" / "manifest.json"], args.cores)
    gpu = gpu_rates(args.results, args.gpu)
    print("measured per core:")
    for r in rates:
        print(f"  {r.stage:<8} {r.core_s_per_product * 1000:9.3f} core-ms/product  ({r.source})")
    missing = [s for s in ("ingest", "extract", "vocab", "train", "assign", "topics", "feeds", "site", "report")
               if s not in {r.stage for r in rates}]
    if missing:
        print(f"  not in the manifest (not counted below): {missing}")
    print("measured per GPU:" if gpu else f"measured per GPU: none in {args.results.name} (or --gpu); CPU rows only")
    for stage, (value, source) in sorted(gpu.items()):
        print(f"  {stage:<8} {value:9,.1f} products/s per GPU  ({source})")
    if args.cache_lookup_us:
        print(f"extract's cache lookup: {args.cache_lookup_us} core-us per cache row per part, "
              f"{args.part_rows:,} products a part (parts x products: not linear)")
    else:
        print("extract's cache lookup (parts x products) NOT counted: pass --cache-lookup-us "
              "(benchmarks/bench_cache_lookup.py)")
    cap = f"training capped at {args.train_cap:,} products, " if args.train_cap else ""
    print(f"assumptions: {cap}the rest linear in products, perfect scale-out, ${args.core_hour_usd}/core-h and "
          f"${args.gpu_hour_usd}/GPU-h (placeholders)\n")
    print("\n".join(table(rates, gpu, args)))


if __name__ == "__main__":
    main()
