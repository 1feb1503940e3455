"""Helpers shared by the tests (importable as `testlib`: tests/ is on the test path)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import pytest
from PIL import Image

from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATASETS = (REPO / ".." / "shared" / "datasets").resolve()
MYNTRA = DATASETS / "myntra"


class Run(NamedTuple):
    """A config and a run folder: ``call_stage(run_x, *run)`` runs a stage on it as the pipeline does."""

    cfg: PipelineConfig
    layout: RunLayout


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


def split_into_parts(products_path, rows_per_part: int, *others) -> list[str]:
    """Rewrite a single-file catalogue and per-product artifacts (``(path, schema)`` pairs) of a test run
    as co-partitioned part folders of ``rows_per_part`` products; returns the part names."""
    import pyarrow.compute as pc

    from pinlanding.collections import parts
    from pinlanding.collections.artifacts import read_table
    from pinlanding.collections.schemas import PRODUCTS

    products = read_table(products_path, PRODUCTS)
    chunks = {parts.part_name(i // rows_per_part): products.slice(i, rows_per_part)
              for i in range(0, products.num_rows, rows_per_part)}
    for path, schema in ((products_path, PRODUCTS), *others):
        table = read_table(path, schema)
        path.unlink()
        parts.write_parts(path, {name: table.filter(pc.is_in(table["product_id"], chunk["product_id"].combine_chunks()))
                                 for name, chunk in chunks.items()}, schema)
    return list(chunks)
