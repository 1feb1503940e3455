"""A large catalogue from a small one: its products copied with fresh ids, fresh content hashes and jittered text.

    python benchmarks/replicate.py --products RUN/catalog/products.parquet --out BIG/catalog/products.parquet \
        --products-out 1000000 [--part-rows 50000] [--raw-out BIG/input.parquet]

``--raw-out`` also writes the copies as one generic Parquet file of merchant input fields (the columns
``pinlanding stage ingest`` reads with ``catalog.format: parquet``; image paths stay as they are, so set
``catalog.image_root`` to the photos' folder), for timing the whole pipeline from its first stage.

``--run RUN --run-out BIG --copies N`` copies a finished run instead: its catalogue and every per-product
artifact the stages after ``assign`` read (attributes, graph, embeddings, visual index), each ``N`` times with
the same keys, plus its vocabulary and config, so those stages can be timed at scale without running the
ones before them (``bench_stages.py --out BIG topics feeds site report``). The copies' graph is the
original's: the same inputs would give the same attributes.

For scale runs on a machine that has only the dev catalogue's photos (the copies reuse them). Copy ``r``
of product ``p`` is ``p-r``; its description ends with a lot number, so its content hash (and every
cache keyed by it) is its own and nothing is reused between copies. Titles, tags and photos stay as they
are, so per-product work (decoding, rules, MiniLM) is the dev catalogue's, repeated.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pinlanding.collections.artifacts import read_table
from pinlanding.collections.catalog import NORMALIZED_FIELDS
from pinlanding.collections.parts import write_parts
from pinlanding.collections.schemas import ASSIGNMENTS, ATTRIBUTES, EMBEDDINGS, PRODUCTS, VISUAL_INDEX


def replicate(base: pa.Table, n: int) -> pa.Table:
    """The first ``n`` rows of ``base`` copied ``ceil(n / len(base))`` times, each copy with fresh keys."""
    copies = []
    for r in range(math.ceil(n / base.num_rows)):
        desc = pc.binary_join_element_wise(pc.fill_null(base["description"], ""), pa.scalar(f" Lot {r}."), "")
        copy = _copy_keys(base, r)
        copies.append(copy.set_column(copy.schema.get_field_index("description"), "description", desc))
    return pa.concat_tables(copies).slice(0, n)


def _copy_keys(table: pa.Table, r: int) -> pa.Table:
    """``table`` with the product ids (``ID-r``) and content hashes of copy ``r``."""
    table = table.set_column(table.schema.get_field_index("product_id"), "product_id",
                             pc.binary_join_element_wise(table["product_id"], pa.scalar(f"-{r}"), ""))
    if "content_hash" in table.column_names:
        hashes = pa.array([None if h is None else hashlib.sha256(f"{h}:{r}".encode()).hexdigest()
                           for h in table["content_hash"].to_pylist()], pa.string())
        table = table.set_column(table.schema.get_field_index("content_hash"), "content_hash", hashes)
    return table


# per-product artifacts of a finished run that the stages after assign read, with their schemas
RUN_ARTIFACTS = (("attributes/attributes.parquet", ATTRIBUTES), ("assignments/assignments.parquet", ASSIGNMENTS),
                 ("assignments/embeddings.parquet", EMBEDDINGS), ("assignments/visual_index.parquet", VISUAL_INDEX))
RUN_COPIED = ("config.yaml", "vocabulary", "catalog/quarantine.parquet", "attributes/failures.parquet",
              "assignments/failures.parquet")


def replicate_run(run: Path, out: Path, copies: int) -> int:
    """Write ``copies`` copies of ``run``'s catalogue and per-product artifacts to the run folder ``out``, copy
    ``r`` as part ``r`` of each (the stages pair a catalogue part with the same part of every artifact); return
    the number of products."""
    products = read_table(run / "catalog" / "products.parquet", PRODUCTS)
    n = products.num_rows
    big = replicate(products, n * copies)
    write_parts(out / "catalog" / "products.parquet", {f"part-{r:05d}": big.slice(r * n, n) for r in range(copies)},
                PRODUCTS)
    for name, schema in RUN_ARTIFACTS:
        base = read_table(run / name, schema)
        write_parts(out / name, {f"part-{r:05d}": _copy_keys(base, r) for r in range(copies)}, schema)
    for name in RUN_COPIED:
        src, dst = run / name, out / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst, dirs_exist_ok=True) if src.is_dir() else shutil.copy2(src, dst)
    return n * copies


def write_catalogue(products: pa.Table, out: Path, part_rows: int) -> int:
    """Write ``products`` as a part folder of ``part_rows`` rows a part; return the number of parts."""
    tables = {f"part-{i // part_rows:05d}": products.slice(i, part_rows)
              for i in range(0, products.num_rows, part_rows)}
    write_parts(out, tables, PRODUCTS)
    return len(tables)


def write_raw(products: pa.Table, out: Path) -> None:
    """``products`` as one input catalogue file: the merchant fields ingest reads, nothing it derives."""
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(products.select([f for f in NORMALIZED_FIELDS if f in products.column_names]), out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--products", type=Path, help="the catalogue to copy (a run's products.parquet)")
    ap.add_argument("--run", type=Path, help="a finished run folder to copy (with --run-out and --copies)")
    ap.add_argument("--run-out", type=Path, help="the run folder to write the copies to")
    ap.add_argument("--copies", type=int, help="with --run: how many copies of each product")
    ap.add_argument("--out", type=Path, help="products.parquet to write (a part folder)")
    ap.add_argument("--raw-out", type=Path, help="also (or only) an input catalogue for ingest: one .parquet file")
    ap.add_argument("--products-out", type=int, help="products in the new catalogue")
    ap.add_argument("--part-rows", type=int, default=50_000)
    args = ap.parse_args()
    if args.run is not None:
        if args.run_out is None or not args.copies:
            ap.error("--run needs --run-out and --copies")
        n = replicate_run(args.run, args.run_out, args.copies)
        print(f"wrote {n} products ({args.copies} copies of {args.run}) to {args.run_out}")
        return
    if args.products is None or not args.products_out or (args.out is None and args.raw_out is None):
        ap.error("give --products, --products-out and --out, --raw-out or both")
    big = replicate(read_table(args.products, PRODUCTS), args.products_out)
    if args.out is not None:
        parts = write_catalogue(big, args.out, args.part_rows)
        print(f"wrote {big.num_rows} products in {parts} parts to {args.out}")
    if args.raw_out is not None:
        write_raw(big, args.raw_out)
        print(f"wrote {big.num_rows} input records to {args.raw_out}")


if __name__ == "__main__":
    main()
