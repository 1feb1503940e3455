"""Shared fixtures: tiny synthetic catalogues built in the test, and the location of the real data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATASETS = (REPO / ".." / "shared" / "datasets").resolve()
MYNTRA = DATASETS / "myntra"


def require_myntra() -> Path:
    """The real dev catalogue, or skip with the reason."""
    if not (MYNTRA / "styles.jsonl.gz").exists():
        pytest.skip(f"real Myntra dev catalogue not found at {MYNTRA}")
    return MYNTRA


def make_image(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (60, 80)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


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
