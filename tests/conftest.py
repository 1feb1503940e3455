"""Shared fixtures: tiny synthetic catalogues built in the test. Helpers live in testlib.py."""
from __future__ import annotations

from pathlib import Path

import pytest
from testlib import make_image, write_jsonl


@pytest.fixture
def tiny_catalog(tmp_path: Path) -> Path:
    """A clean 6-product JSONL catalogue with real JPEG images."""
    colors = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 160, 60)}
    rows = []
    for i, (name, rgb) in enumerate(list(colors.items()) * 2):
        img = make_image(tmp_path / "images" / f"{i}.jpg", rgb)
        rows.append({"product_id": f"p{i}", "title": f"Acme Women {name.title()} Cotton Dress {i}",
                     "description": f"A {name} cotton dress.", "merchant_tags": ["Dresses", "Casual Wear"],
                     "brand": "Acme", "price": 999 + i, "image_path": str(img.relative_to(tmp_path))})
    return write_jsonl(tmp_path / "catalog.jsonl", rows)
