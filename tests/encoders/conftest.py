"""Tiny synthetic runs for the encoder tests: solid-colour product photos, titles, curated attributes."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from pinlanding.collections.artifacts import write_table
from pinlanding.collections.config import PipelineConfig, RayConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.schemas import ATTRIBUTES, PRODUCTS, VOCAB
from pinlanding.encoders.config import AssignConfig, EncoderConfig

COLORS = {"red": (210, 30, 30), "blue": (30, 40, 210), "green": (30, 170, 60), "yellow": (230, 220, 40)}
TYPES = ["dress", "shirt"]


def tiny_encoder_config(**overrides) -> EncoderConfig:
    # colour_bins=4: the frozen features (maps and histograms) stay smaller than a 32x24 photo, so the train
    # stage stores them and the assign stage's stored-feature path is exercised (encoders.features.stores_features)
    base = dict(vision_model="test_efficientnet", vision_pretrained="none", vision_tuned_stages=0,
                image_size=(32, 24), colour_bins=4, embed_dim=32, epochs=6, batch_size=16,
                lr=5e-3, val_fraction=0.25, split_block=0, num_threads=1, target_precision=0.6, shrinkage=5.0)
    return EncoderConfig(**{**base, **overrides})


def product_width(cfg: EncoderConfig | None = None) -> int:
    """Width of the product embeddings: ``embed_dim`` plus the colour branch's own dimensions."""
    cfg = cfg or tiny_encoder_config()
    return cfg.resolved("embed_dim") + (cfg.resolved("colour_dims") or 0)


def tiny_config(**encoder) -> PipelineConfig:
    return PipelineConfig(encoder=tiny_encoder_config(**encoder),
                          assign=AssignConfig(batch_size=16, decode_batch_size=16, top_k=5, decode_concurrency=1),
                          ray=RayConfig(num_cpus=2, object_store_memory=100_000_000))


def build_run(root: Path, n: int = 48) -> RunLayout:
    """A run folder with catalog, curated attributes and vocabulary for ``n`` products."""
    layout = RunLayout(root / "run")
    rows, attrs = [], []
    names = list(COLORS)
    for i in range(n):
        color, kind = names[i % len(names)], TYPES[(i // len(names)) % len(TYPES)]
        gender = "women" if i % 3 else "men"
        img = root / "images" / f"{i}.jpg"
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (60, 80), COLORS[color]).save(img, format="JPEG")
        title = f"Acme {gender.title()} {color.title()} {kind.title()}"
        rows.append({"product_id": str(1000 + i), "title": title, "description": None, "merchant_tags": ["Casual Wear"],
                     "brand": "Acme", "price": 10.0 + i, "currency": "INR", "image_path": str(img),
                     "content_hash": hashlib.sha256(title.encode()).hexdigest(), "source_row": i})
        for key, value in (("color", color), ("category", kind), ("gender", gender)):
            attrs.append({"product_id": str(1000 + i), "key": key, "value": value, "source": "title",
                          "confidence": 0.9, "raw": None})
    write_table(pa.Table.from_pylist(rows, schema=PRODUCTS), layout.products, PRODUCTS)
    write_table(pa.Table.from_pylist(attrs, schema=ATTRIBUTES), layout.curated_attributes, ATTRIBUTES)
    vocab = [{"key": k, "value": v, "variants": [v], "product_count": 1, "status": "approved", "judge_score": None,
              "provenance": "test"} for k, v in sorted({(a["key"], a["value"]) for a in attrs})]
    vocab.append({"key": "color", "value": "purple", "variants": ["purple"], "product_count": 0, "status": "rejected",
                  "judge_score": None, "provenance": "test"})
    write_table(pa.Table.from_pylist(vocab, schema=VOCAB), layout.vocabulary, VOCAB)
    return layout


@pytest.fixture
def tiny_run(tmp_path: Path) -> RunLayout:
    return build_run(tmp_path)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> RunLayout:
    """A tiny run with a trained encoder (trained once per test session; copy it before writing to it)."""
    from pinlanding.collections.pipeline import call_stage
    from pinlanding.encoders.train import run_train

    layout = build_run(tmp_path_factory.mktemp("trained"))
    call_stage(run_train, tiny_config(), layout)
    return layout
