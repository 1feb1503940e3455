"""Cost of extract's per-part cache lookup against the size of the result cache.

    python benchmarks/bench_cache_lookup.py [--run runs/myntra] [--copies 1 4 16] [--part-rows 10000]

``extract`` looks each catalogue part's content hashes up in the result cache (vocab/extract.py): once for
the plan (the hash column) and once for the results (whole rows). Content hashes are random, so no row
group can be skipped and each lookup scans the whole cache: the stage's lookup work is parts x cache rows,
which grows with the square of the catalogue. This benchmark measures the cost per part on caches of
``copies`` x the real cache of a finished run (real rows with fresh content hashes, compacted into one
file as ``extract.compact_after_parts`` does) and prints the lookup seconds it implies for 1M, 100M and 1B
products at ``--part-rows`` products per part (cache rows = products, one core per lookup).
"""
from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pinlanding.collections.artifacts import read_table
from pinlanding.vocab.extract import ResultCache
from pinlanding.vocab.extractors.base import RESULT_SCHEMA


def real_rows(run: Path) -> pa.Table:
    files = sorted((run / "attributes" / "cache").glob("*/part-*.parquet"))
    if not files:
        raise SystemExit(f"no extract cache under {run}/attributes/cache: run `make run` first")
    return pa.concat_tables([read_table(f, RESULT_SCHEMA) for f in files])


def with_new_hashes(rows: pa.Table, copy: int) -> pa.Table:
    hashes = [hashlib.sha256(f"{copy}:{h}".encode()).hexdigest() for h in rows["content_hash"].to_pylist()]
    return rows.set_column(rows.schema.get_field_index("content_hash"), "content_hash", pa.array(hashes))


def timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn().num_rows
    return time.perf_counter() - start, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/myntra"))
    ap.add_argument("--copies", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--part-rows", type=int, default=10_000)
    args = ap.parse_args()
    rows = real_rows(args.run)
    print(f"real cache: {rows.num_rows:,} rows, {rows.nbytes / rows.num_rows:.0f} bytes a row in memory")
    print(f"{'cache rows':>12} {'plan s/part':>12} {'results s/part':>15} {'us per 1k cache rows':>21}")
    per_row = []
    for copies in args.copies:
        with tempfile.TemporaryDirectory() as tmp:
            cache = ResultCache(Path(tmp), {"bench": "lookup"})
            for c in range(copies):
                cache.add(with_new_hashes(rows, c))
            cache.compact(0)  # one file, as a large cache is after compaction
            n_rows = rows.num_rows * copies
            # a part: half of its products cached (spread over the cache), half new
            cached = with_new_hashes(rows, copies - 1)["content_hash"].slice(0, args.part_rows // 2)
            new = pa.array([hashlib.sha256(f"new:{i}".encode()).hexdigest() for i in range(args.part_rows // 2)])
            part = pa.concat_arrays([cached.combine_chunks(), new])
            plan_s, found = timed(lambda: cache.lookup(part, columns=["content_hash"]))
            results_s, _ = timed(lambda: cache.lookup(part))
            assert found == len(cached) and pc.count_distinct(part).as_py() == len(part)
            per_row.append((plan_s + results_s) / n_rows)
            print(f"{n_rows:>12,} {plan_s:>12.3f} {results_s:>15.3f} {per_row[-1] * 1e9:>21.1f}")
    cost = per_row[-1]  # seconds per cache row per part lookup, on the largest cache measured
    print(f"\nprojected lookup work (plan + results), {args.part_rows:,} products a part, cache = catalogue:")
    for products in (1_000_000, 100_000_000, 1_000_000_000):
        parts = -(-products // args.part_rows)
        core_s = parts * products * cost
        print(f"  {products:>13,} products: {parts:>7,} parts x {products:,} cache rows = "
              f"{core_s:,.0f} core-s ({core_s / 3600:,.1f} core-h)")


if __name__ == "__main__":
    main()
