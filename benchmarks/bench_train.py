"""Encoder training time and held-out figures, outside the pipeline (no Ray, no Spark): for a GPU machine.

    python benchmarks/bench_train.py --run runs/myntra --preset gpu [--image-root DIR] [--out DIR] [--set FIELD=VALUE]

Reads a finished run's catalogue, vocabulary and curated attributes, trains the encoder with the
given preset exactly as the train stage does (``train_encoder``) and prints the device, the time to
decode photos and compute the frozen image features, each epoch's time, and the held-out figures the
stage records (per-key masked recall at the calibrated thresholds, reliability against the extraction).
``--image-root`` points the products' photos at another folder (same file names), e.g. a copy of the
catalogue's images on a machine where the original paths do not exist.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from pinlanding.collections.config import RayConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.encoders.config import EncoderConfig
from pinlanding.encoders.data import load_vocabulary
from pinlanding.encoders.sample import training_sample
from pinlanding.encoders.train import train_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--preset", choices=["cpu", "gpu"], default="gpu")
    ap.add_argument("--image-root", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="where encoder files go (default: a temporary folder)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="another encoder setting, e.g. --set image_size=[128,96] (YAML value)")
    args = ap.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    layout = RunLayout(args.run)
    vocab = load_vocabulary(layout.vocabulary)
    cfg = EncoderConfig(preset=args.preset, **{"epochs": args.epochs, **overrides})
    sample = training_sample(layout.products, layout.curated_attributes, vocab, cfg.sample_products, 0, RayConfig(),
                             cfg.single_valued_keys)
    if args.image_root:
        sample.products.image_paths = [str(args.image_root / Path(p).name) if p else None
                                       for p in sample.products.image_paths]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_encoder(cfg, sample.products, vocab, sample.positives, args.out or Path(tmp),
                               exclusive=sample.exclusive_keys(cfg.exclusive_share, cfg.single_valued_keys), seed=0)
        total = time.perf_counter() - start
    m = result.metrics
    print(json.dumps({
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "preset": args.preset, "spec": m["spec"], "train_products": m["train_products"],
        "heldout_products": m["heldout_products"], "prepare_seconds (decode + frozen features)": m["prepare_seconds"],
        "epoch_seconds": [h["seconds"] for h in m["history"]], "final_loss": round(m["history"][-1]["loss"], 4),
        "stage_seconds_without_sampling": round(total, 2), "heldout_key_recall": m["heldout_key_recall"],
        "assignable_keys": m["assignable_keys"], "heldout_reliability": m["heldout_reliability"]}, indent=2))


if __name__ == "__main__":
    main()
