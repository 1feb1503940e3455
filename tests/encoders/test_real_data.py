"""The encoder on real Myntra products and photos (a few hundred, tiny config)."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pinlanding.collections.artifacts import write_table
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ATTRIBUTES, PRODUCTS, VOCAB
from pinlanding.encoders.assign import EmbedAndScore, Preprocess
from pinlanding.encoders.train import run_train

from .conftest import product_width, tiny_config

MYNTRA = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "myntra"
COLOURS = ("black", "blue", "white", "red", "green", "grey", "brown", "pink", "navy")
pytestmark = pytest.mark.slow


def _real_run(root: Path, n: int = 400) -> RunLayout:
    """Products from the real catalogue (input fields only); attributes parsed from titles, not labels."""
    if not (MYNTRA / "styles.jsonl.gz").exists():
        pytest.skip(f"real Myntra dev catalogue not found at {MYNTRA}")
    layout = RunLayout(root)
    products, attrs = [], []
    with gzip.open(MYNTRA / "styles.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            title = r.get("productDisplayName") or ""
            words = title.lower().split()
            found = [("color", c) for c in COLOURS if c in words][:1] + \
                    [("gender", g) for g in ("men", "women") if g in words][:1]
            img = MYNTRA / "images" / f"{r['id']}.jpg"
            if not found or not img.exists():
                continue
            pid = str(r["id"])
            products.append({"product_id": pid, "title": title, "description": None,
                             "merchant_tags": [t for t in (r.get("displayCategories") or "").split(",") if t],
                             "brand": r.get("brandName"), "price": None, "currency": "INR", "image_path": str(img),
                             "content_hash": hashlib.sha256(title.encode()).hexdigest(), "source_row": len(products)})
            attrs += [{"product_id": pid, "key": k, "value": v, "source": "title", "confidence": 0.9, "raw": None}
                      for k, v in found]
            if len(products) == n:
                break
    write_table(pa.Table.from_pylist(products, schema=PRODUCTS), layout.products, PRODUCTS)
    write_table(pa.Table.from_pylist(attrs, schema=ATTRIBUTES), layout.curated_attributes, ATTRIBUTES)
    pairs = sorted({(a["key"], a["value"]) for a in attrs})
    write_table(pa.Table.from_pylist([{"key": k, "value": v, "variants": [v], "product_count": None, "status": "approved",
                                       "judge_score": None, "provenance": "test"} for k, v in pairs], schema=VOCAB),
                layout.vocabulary, VOCAB)
    return layout


def test_real_products_train_and_embed(tmp_path):
    layout = _real_run(tmp_path / "run")
    counts = call_stage(run_train, tiny_config(epochs=4, batch_size=64, val_fraction=0.2), layout)
    metrics = json.loads((layout.dir("encoder") / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]
    # titles name colour and gender: held-out products must find them far above chance (2 of ~11 attributes)
    assert counts["product_to_attr_recall@10"] > 0.8
    actor = EmbedAndScore(str(layout.dir("encoder")), device="cpu", top_k=3)
    import pyarrow.parquet as pq

    rows = pq.read_table(layout.products).slice(0, 8).to_pydict()
    batch = {k: np.array(v, dtype=object) for k, v in rows.items()}
    out = actor(Preprocess(actor.bundle.model.spec, actor.bundle.model.image_size)(batch))
    assert out["embedding"].shape == (8, product_width()) and (out["image_error"] == "").all()
