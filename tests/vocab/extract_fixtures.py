"""Tiny synthetic catalogues for the extraction tests (PRODUCTS tables with real JPEG files)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image, ImageDraw

from pinlanding.collections.artifacts import write_table
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.schemas import PRODUCTS


def product_image(path: Path, rgb: tuple[int, int, int], background: tuple[int, int, int] = (255, 255, 255)) -> str:
    """A 60x80 photo-like JPEG: a coloured product shape on a plain background."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (60, 80), background)
    ImageDraw.Draw(img).rectangle([12, 10, 48, 70], fill=rgb)
    img.save(path, format="JPEG", quality=95)
    return str(path)


def products(rows: list[dict[str, Any]]) -> pa.Table:
    """A PRODUCTS table; missing fields get defaults and the content hash covers every field."""
    full = []
    for i, r in enumerate(rows):
        row = {"product_id": str(r.get("product_id", f"p{i}")), "title": r.get("title", f"Item {i}"),
               "description": r.get("description"), "merchant_tags": r.get("merchant_tags", []),
               "brand": r.get("brand"), "price": r.get("price", 999.0), "currency": "INR",
               "image_path": r.get("image_path"), "source_row": i}
        row["content_hash"] = hashlib.sha256(repr(sorted(row.items())).encode()).hexdigest()
        full.append(row)
    return pa.Table.from_pylist(full, schema=PRODUCTS)


def write_products(root: Path, rows: list[dict[str, Any]]) -> RunLayout:
    layout = RunLayout(root)
    write_table(products(rows), layout.products, PRODUCTS)
    return layout


def fashion_rows(tmp: Path, n_each: int = 5) -> list[dict[str, Any]]:
    """A small fashion catalogue: five product types, colours in titles and images, some noise."""
    kinds = [("Men", "Shirt", (30, 60, 180), "Blue"), ("Women", "Kurta", (200, 30, 40), "Red"),
             ("Men", "Casual Shoes", (20, 20, 20), "Black"), ("Women", "Handbag", (110, 70, 40), "Brown"),
             ("Unisex", "Sunglasses", (20, 20, 20), "Black")]
    rows = []
    for g, kind, rgb, colour in kinds:
        for j in range(n_each):
            pid = f"{kind.split()[-1].lower()}{j}"
            rows.append({"product_id": pid, "title": f"Acme {g} {colour} Striped {kind}",
                         "description": f"A {colour.lower()} {kind.lower()} made of 100% cotton.",
                         "merchant_tags": ["Casual Wear"], "brand": "Acme",
                         "image_path": product_image(tmp / "img" / f"{pid}.jpg", rgb)})
    return rows
