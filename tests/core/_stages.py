"""A downstream stage for pipeline tests: counts its runs and copies the product ids."""
from __future__ import annotations

import pyarrow.parquet as pq

from pinlanding.collections.artifacts import write_text

CALLS: list[str] = []


def ids_stage(ctx) -> dict:
    CALLS.append("ids")
    ids = pq.read_table(ctx.layout.products, columns=["product_id"]).column("product_id").to_pylist()
    write_text(ctx.layout.dir("report") / "ids.txt", "\n".join(ids))
    return {"ids": len(ids)}
