"""A downstream stage for pipeline tests: counts its runs and copies the product ids."""
from __future__ import annotations

from pinlanding.collections.artifacts import read_table, write_text
from pinlanding.collections.schemas import PRODUCTS

CALLS: list[str] = []


def ids_stage(ctx) -> dict:
    CALLS.append("ids")
    ids = read_table(ctx.layout.products, PRODUCTS).column("product_id").to_pylist()
    write_text(ctx.layout.dir("report") / "ids.txt", "\n".join(ids))
    return {"ids": len(ids)}
