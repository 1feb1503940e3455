"""CPU preprocessing (a stateless Ray Data map): clean the text fields and load the image.

What is prepared from the image depends on the backend's ``image_mode``: ``pixels`` (colour shares,
for the embedded backend), ``jpeg`` (re-encoded bytes no larger than ``max_side``, for model backends)
or ``none``. An unreadable image never fails the product: ``image_error`` records why and extraction
goes on from the text.
"""
from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from PIL import Image

from pinlanding.vocab.extractors.base import batch_rows
from pinlanding.collections.text import one_line

PRODUCT_COLUMNS = ("product_id", "content_hash", "title", "description", "merchant_tags", "brand", "price",
                   "currency", "image_path")


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    return [one_line(t) for t in list(value) if t is not None and one_line(t)]


def _lines(text: Any) -> str:
    """Each line of ``text`` as :func:`one_line` makes it, line breaks kept: they bound a description's
    sections and sentences (a care instruction is one line of a label)."""
    return "\n".join(line for line in (one_line(part) for part in str(text or "").splitlines()) if line)


def _image(path: Any, mode: str, max_side: int) -> tuple[str, bytes, str]:
    """(colour JSON, jpeg bytes, error) for one image path."""
    if mode == "none":
        return "", b"", ""
    if not path:
        return "", b"", "no image"
    try:
        with Image.open(str(path)) as img:
            img.load()
            if mode == "pixels":
                from pinlanding.vocab.extractors.pixels import color_shares

                return json.dumps(color_shares(img)), b"", ""
            img = img.convert("RGB")
            img.thumbnail((max_side, max_side))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            return "", buf.getvalue(), ""
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return "", b"", f"{type(exc).__name__}: {exc}"[:300]


def prepare_batch(batch: dict[str, Any], image_mode: str = "pixels", max_side: int = 448,
                  max_description_chars: int = 1500) -> dict[str, np.ndarray]:
    """Clean text fields and add ``image_colors`` / ``image_jpeg`` / ``image_error`` columns."""
    out: dict[str, list[Any]] = {k: [] for k in (*PRODUCT_COLUMNS, "image_colors", "image_jpeg", "image_error")}
    for row in batch_rows(batch):
        out["product_id"].append(str(row["product_id"]))
        out["content_hash"].append(str(row["content_hash"]))
        out["title"].append(one_line(row.get("title")))
        out["description"].append(_lines(row.get("description"))[:max_description_chars])
        out["merchant_tags"].append(json.dumps(_tags(row.get("merchant_tags")), ensure_ascii=False))
        out["brand"].append(one_line(row.get("brand")))
        price = row.get("price")
        out["price"].append(float(price) if price is not None and price == price else float("nan"))
        out["currency"].append(one_line(row.get("currency")))
        out["image_path"].append(str(row.get("image_path") or ""))
        colors, jpeg, error = _image(row.get("image_path"), image_mode, max_side)
        out["image_colors"].append(colors)
        out["image_jpeg"].append(jpeg)
        out["image_error"].append(error)
    return {k: np.array(v, dtype=np.float64 if k == "price" else object) for k, v in out.items()}
