"""The train stage: split the curated products, build the model, train it (``encoders/fit.py``), validate and
calibrate it on held-out products (``encoders/validate.py``), and write ``encoder/``: the model file,
``metrics.json`` and ``thresholds.json``. The split follows open_clip's: data, a fit loop with checkpoints,
evaluation and calibration."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import torch

from pinlanding.collections.artifacts import AnyPath, as_path, write_json
from pinlanding.collections.config import RayConfig, RunConfig
from pinlanding.collections.engines import torch_device
from pinlanding.collections.stage_inputs import Runtime, StageInputs, artifact
from pinlanding.encoders.bundle import MODEL_FILE, EncoderBundle, save_bundle
from pinlanding.encoders.calibrate import Calibration
from pinlanding.encoders.checkpoint import seed_all
from pinlanding.encoders.clip import build_encoder
from pinlanding.encoders.config import EncoderConfig
from pinlanding.encoders.data import ProductSet, choose_image_size, heldout_mask, load_vocabulary, mask_values
from pinlanding.encoders.features import FEATURES_FILE, feature_digest, read_features, write_features
from pinlanding.encoders.fit import TrainingSet, fit
from pinlanding.encoders.images import TrainingImages
from pinlanding.encoders.sample import training_sample
from pinlanding.encoders.validate import validate


@dataclass
class TrainResult:
    bundle: EncoderBundle
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    calibration: Calibration
    heldout_scores: np.ndarray
    heldout_positive: np.ndarray
    heldout_ids: list[str] = field(default_factory=list)


def model_spec(cfg: EncoderConfig, image_paths: list[str | None] | None = None) -> dict[str, Any]:
    """The backend spec to build; an unset ``image_size`` is chosen from the catalogue's photos."""
    r = cfg.resolved_dict()
    if cfg.backend == "open_clip":
        return {"backend": "open_clip", "clip_model": r["clip_model"], "clip_pretrained": r["clip_pretrained"]}
    size = r["image_size"] or choose_image_size(image_paths or [], r["max_image_pixels"], r["min_image_pixels"])
    return {"backend": "dual", "image_size": tuple(size),
            **{k: r[k] for k in ("vision_model", "text_model", "product_text", "embed_dim", "max_text_tokens",
                                 "vision_pretrained", "vision_tuned_stages", "colour_bins", "colour_bands",
                                 "colour_dims")}}


def split(products: ProductSet, positives: dict[str, list[int]], cfg: EncoderConfig, seed: int
          ) -> tuple[ProductSet, np.ndarray, np.ndarray]:
    """The products with curated attributes, and the indices of their training and held-out products (held-out:
    whole blocks of neighbouring ids, so that near-identical variants do not straddle the split)."""
    keep = np.array([i for i, pid in enumerate(products.ids) if positives.get(pid)], dtype=np.int64)
    if len(keep) < 4:
        raise ValueError(f"only {len(keep)} products have curated attributes; the encoder needs at least 4")
    data = products.take(keep)
    val = heldout_mask(data.ids, cfg.val_fraction, cfg.split_block, seed)
    if val.all() or not val.any():  # tiny catalogues: fall back to a plain hashed split
        val = heldout_mask(data.ids, cfg.val_fraction, 0, seed)
    if not val.any():
        val[-max(1, len(val) // 10):] = True
    train_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    if cfg.max_train_products and len(train_idx) > cfg.max_train_products:
        train_idx = np.sort(np.random.default_rng(seed).choice(train_idx, cfg.max_train_products, replace=False))
    return data, train_idx, val_idx


def train_encoder(cfg: EncoderConfig, products: ProductSet, vocab: list[tuple[str, str]],
                  positives: dict[str, list[int]], out_dir: AnyPath, exclusive: list[str] | None = None,
                  seed: int = 0, device: str = "auto", log=print) -> TrainResult:
    """Train, validate and calibrate; write the model file, metrics.json, thresholds.json under ``out_dir``."""
    out_dir = as_path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch_device(cfg.device if cfg.device != "auto" else device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    data, train_idx, val_idx = split(products, positives, cfg, seed)
    seed_all(seed)
    spec = model_spec(cfg, data.image_paths)
    model = build_encoder(spec).to(device)
    t0 = time.perf_counter()
    digest = feature_digest(model)
    images = TrainingImages(model, data, device, read_features(out_dir / FEATURES_FILE, digest),
                            threads=max(1, torch.get_num_threads()))
    if digest is not None and images.computed:  # the assign stage reuses them (encoders/features.py)
        keep_rows = np.flatnonzero(images.has_image)
        write_features(out_dir / FEATURES_FILE, digest, [data.ids[i] for i in keep_rows],
                       [data.content_hash[i] for i in keep_rows], images.cache.take(torch.as_tensor(keep_rows)))
    tokens = model.tokenize(data.texts)
    # the same texts without the words of the product's curated values: trained on, the model must read
    # those attributes from the photo (with them, the text alone answers and the image is ignored)
    blind = model.tokenize([mask_values(t, [vocab[i][1] for i in positives[pid]])
                            for pid, t in zip(data.ids, data.texts)])
    prep_s = time.perf_counter() - t0
    history, stopped_early = fit(model, spec, cfg, TrainingSet(data, images, tokens, blind, positives, train_idx),
                                 vocab, out_dir, seed, device, log)

    bundle = EncoderBundle(model, vocab, None, exclusive or [], "", device)  # type: ignore[arg-type]
    checked = validate(bundle, cfg, images, data, val_idx, tokens, positives, seed)
    cal = checked.calibration
    metrics = {
        **checked.metrics,
        "train_products": int(len(train_idx)),
        "history": history, "prepare_seconds": round(prep_s, 3), "device": device, "spec": spec,
        "image_features": {"stored": len(data.ids) - images.computed, "computed": images.computed},
        "stopped_early": stopped_early,
        "exclusive_keys": exclusive or [],
    }
    version = save_bundle(out_dir / MODEL_FILE, model, vocab, cal, exclusive or [], {"metrics": metrics["heldout"]})
    bundle.version = version
    metrics["model_version"] = version
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "thresholds.json", [
        {"key": k, "value": v, "threshold": round(float(cal.thresholds[i]), 4),
         "heldout_positives": int(cal.positives[i]), "precision": round(float(cal.precision[i]), 4),
         "recall": round(float(cal.recall[i]), 4)} for i, (k, v) in enumerate(vocab)])
    return TrainResult(bundle, history, metrics, cal, checked.scores, checked.positive, [data.ids[i] for i in val_idx])


@dataclass(frozen=True)
class TrainInputs(StageInputs):
    """The train stage reads the catalogue and the curated vocabulary with its attributes; ``extraction`` is what
    those attributes were curated from: a scoped rebuild keeps the encoder only while it is unchanged."""

    outputs = ("encoder",)
    catalog: AnyPath = artifact("catalog")
    vocabulary: AnyPath = artifact("vocabulary")
    extraction: AnyPath = artifact("attributes")


TrainCounts = TypedDict("TrainCounts", {
    "epochs": int, "final_loss": float | None, "train_products": int, "heldout_products": int,
    "attr_to_product_recall@10": float, "product_to_attr_recall@10": float, "assignable_attributes": int,
    "model_version": str})


def run_train(cfg: EncoderConfig, run: RunConfig, ray_cfg: Runtime[RayConfig], inputs: TrainInputs) -> TrainCounts:
    """Stage entry: read the catalogue and curated attributes, train, write ``encoder/``."""
    layout = inputs.layout
    vocab = load_vocabulary(layout.vocabulary)
    sample = training_sample(layout.products, layout.curated_attributes, vocab, cfg.sample_products,
                             run.seed, ray_cfg, cfg.single_valued_keys)
    result = train_encoder(cfg, sample.products, vocab, sample.positives, layout.dir("encoder"),
                           exclusive=sample.exclusive_keys(cfg.exclusive_share, cfg.single_valued_keys),
                           seed=run.seed, device=run.device)
    h = result.metrics["heldout"]
    return {"epochs": len(result.history), "final_loss": round(result.history[-1]["loss"], 4) if result.history else None,
            "train_products": result.metrics["train_products"], "heldout_products": result.metrics["heldout_products"],
            "attr_to_product_recall@10": round(h.get("attr_to_product_recall", 0.0), 4),
            "product_to_attr_recall@10": round(h.get("product_to_attr_recall", 0.0), 4),
            "assignable_attributes": result.metrics["assignable_attributes"], "model_version": result.bundle.version}
