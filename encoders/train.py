"""The train stage: contrastive training of the dual encoder, held-out validation and calibration.

Recipe: keep products with curated attributes, split off held-out product groups, train with the
bidirectional multi-positive contrastive loss (negatives: the other attributes in the batch), then
score the held-out products against every vocabulary attribute to report Recall@10, and again with each
key's extracted words masked out of their text to choose the per-attribute thresholds (the encoder
fills keys whose words a product's text lacks). Checkpoints every ``checkpoint_every`` epochs; a rerun
with the same setup resumes from ``encoder/checkpoint.safetensors`` (raising ``epochs`` continues training);
the checkpoint holds the RNG states, so a resumed run ends with the same model as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pinlanding.collections.artifacts import AnyPath, as_path, json_digest, write_json
from pinlanding.collections.engines import torch_device
from pinlanding.encoders.bundle import MODEL_FILE, EncoderBundle, save_bundle
from pinlanding.encoders.calibrate import Calibration, calibrate, key_groups, key_recall, key_scores
from pinlanding.encoders.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint, seed_all
from pinlanding.encoders.clip import ImageFeatures, build_encoder, key_softmax_loss, multi_positive_clip_loss
from pinlanding.encoders.config import EncoderConfig
from pinlanding.encoders.data import (ProductSet, attribute_phrase, choose_image_size, decode_images, heldout_mask,
                                     load_vocabulary, mask_values)
from pinlanding.encoders.features import FEATURES_FILE, FeatureStore, feature_digest, read_features, write_features
from pinlanding.encoders.metrics import reliability, retrieval_metrics
from pinlanding.encoders.sample import training_sample


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
                                 "vision_pretrained", "vision_tuned_stages", "colour_bins")}}


def _positive_matrix(ids: list[str], positives: dict[str, list[int]], n_attr: int) -> np.ndarray:
    out = np.zeros((len(ids), n_attr), dtype=bool)
    for row, pid in enumerate(ids):
        out[row, positives.get(pid, [])] = True
    return out


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return f


def train_encoder(cfg: EncoderConfig, products: ProductSet, vocab: list[tuple[str, str]],
                  positives: dict[str, list[int]], out_dir: AnyPath, exclusive: list[str] | None = None,
                  seed: int = 0, device: str = "auto", log=print) -> TrainResult:
    """Train, validate and calibrate; write the model file, metrics.json, thresholds.json under ``out_dir``."""
    out_dir = as_path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch_device(cfg.device if cfg.device != "auto" else device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
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
    seed_all(seed)
    spec = model_spec(cfg, data.image_paths)
    model = build_encoder(spec).to(device)
    t0 = time.perf_counter()
    digest = feature_digest(model)
    images = TrainingImages(model, data, device, read_features(out_dir / FEATURES_FILE, digest),
                            threads=max(1, torch.get_num_threads()))
    has_image = images.has_image
    if digest is not None and images.computed:  # the assign stage reuses them (encoders/features.py)
        keep_rows = np.flatnonzero(has_image)
        write_features(out_dir / FEATURES_FILE, digest, [data.ids[i] for i in keep_rows],
                       [data.content_hash[i] for i in keep_rows], images.cache.take(torch.as_tensor(keep_rows)))
    tokens = model.tokenize(data.texts)
    # the same texts without the words of the product's curated values: trained on, the model must read
    # those attributes from the photo (with them, the text alone answers and the image is ignored)
    blind = model.tokenize([mask_values(t, [vocab[i][1] for i in positives[pid]])
                            for pid, t in zip(data.ids, data.texts)])
    prep_s = time.perf_counter() - t0
    phrases = [attribute_phrase(k, v) for k, v in vocab]
    pos_lists = [np.asarray(positives[pid], dtype=np.int64) for pid in data.ids]
    keys = np.array([k for k, _ in vocab])
    key_cols = [torch.as_tensor(np.flatnonzero(keys == k), device=device) for k in sorted(set(keys))
                if (keys == k).sum() > 1]

    batch_size = int(cfg.resolved("batch_size"))
    epochs = int(cfg.resolved("epochs"))
    steps_per_epoch = max(1, math.ceil(len(train_idx) / batch_size))
    params = [p for p in model.parameters() if p.requires_grad]
    lr = float(cfg.resolved("lr"))
    # the pretrained trunk moves slowly; its new projection head learns at the full rate
    pretrained = {id(p) for p in model.visual.trunk.parameters()} if spec.get("vision_pretrained") else set()
    opt = torch.optim.AdamW([{"params": [p for p in params if id(p) not in pretrained], "lr": lr},
                             {"params": [p for p in params if id(p) in pretrained], "lr": lr * cfg.vision_lr_scale}],
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(epochs * steps_per_epoch, max(1, steps_per_epoch // 2)))
    setup = json_digest({"spec": spec, "lr": cfg.resolved("lr"), "wd": cfg.weight_decay, "bs": batch_size,
                         "seed": seed, "drop": cfg.image_dropout, "text_mask": cfg.resolved("text_mask"), "key_loss": cfg.key_loss_weight,
                         "train": [data.ids[i] for i in train_idx],
                         "vocab": vocab})
    history: list[dict[str, float]] = []
    start_epoch = 0
    ckpt_path = out_dir / CHECKPOINT_FILE
    # the frozen text features of the phrases are cached on first use: fill the cache here, once, in eval mode
    # (no dropout noise baked in) and before any RNG state is restored, so a resumed run uses the same features
    model.eval()
    with torch.no_grad():
        model.encode_attributes(phrases)
    resumed = load_checkpoint(ckpt_path, setup, model, opt, sched, log) if cfg.resume else None
    if resumed is not None:
        start_epoch, history = resumed
        log(f"resuming encoder training from epoch {start_epoch}")
    amp = cfg.amp and device.startswith("cuda")
    t_train, stopped_early = time.perf_counter(), False
    for epoch in range(start_epoch, epochs):
        if cfg.max_train_seconds is not None and epoch > start_epoch \
                and time.perf_counter() - t_train > cfg.max_train_seconds:
            stopped_early = True
            log(f"stopping after {epoch} epochs: encoder.max_train_seconds={cfg.max_train_seconds} reached")
            break
        model.train()
        rng = np.random.default_rng(seed * 1000 + epoch)
        order = rng.permutation(train_idx)
        t_epoch, losses = time.perf_counter(), []
        for step in range(steps_per_epoch):
            b = order[step * batch_size:(step + 1) * batch_size]
            if len(b) < 2:
                continue
            attrs = np.unique(np.concatenate([pos_lists[i] for i in b]))
            targets = np.zeros((len(b), len(attrs)), dtype=bool)
            for row, i in enumerate(b):
                targets[row, np.searchsorted(attrs, pos_lists[i])] = True
            feats = images.batch(b)
            if rng.random() < 0.5:
                feats = feats.flip()  # horizontal flip as augmentation (of the frozen stages' output)
            mask = torch.as_tensor(has_image[b] & (rng.random(len(b)) >= cfg.image_dropout), device=device)
            text = np.where((rng.random(len(b)) < cfg.resolved("text_mask"))[:, None], blind[b], tokens[b])
            ids = torch.as_tensor(text, dtype=torch.long, device=device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                p = model.combine(model.visual_embedding(feats, mask), model.text_embedding(ids)).float()
                a = model.encode_attributes(phrases).float()
                loss = multi_positive_clip_loss(p, a[torch.as_tensor(attrs, device=device)], torch.as_tensor(targets, device=device), model.logit_scale)
                if cfg.key_loss_weight:
                    full = torch.zeros((len(b), len(vocab)), dtype=torch.bool, device=device)
                    full[:, torch.as_tensor(attrs, device=device)] = torch.as_tensor(targets, device=device)
                    loss = loss + cfg.key_loss_weight * key_softmax_loss(p, a, full, key_cols, model.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                        "seconds": round(time.perf_counter() - t_epoch, 3), "products": int(len(train_idx))})
        log(f"epoch {epoch + 1}/{epochs}: loss {history[-1]['loss']:.4f} in {history[-1]['seconds']:.1f}s")
        if (epoch + 1) % max(1, cfg.checkpoint_every) == 0 or epoch + 1 == epochs:
            save_checkpoint(ckpt_path, setup, epoch + 1, history, model, opt, sched)

    model.eval()
    bundle = EncoderBundle(model, vocab, None, exclusive or [], "", device)  # type: ignore[arg-type]
    vi = val_idx
    visual = images.visual_embeddings(vi, has_image[vi])
    attr_emb = bundle.attribute_embeddings()
    groups = key_groups(list(keys), exclusive or [])
    scale = float(model.logit_scale.detach().exp().clamp(max=100))
    cosine = combine_texts(model, visual, tokens[vi]) @ attr_emb.T
    scores = key_scores(cosine, groups, scale)
    pos = _positive_matrix([data.ids[i] for i in vi], positives, len(vocab))
    has_key = {key: pos[:, keys == key].any(1) for key in set(keys)}  # products with some value of the key
    known = np.stack([has_key[k] for k in keys], axis=1)
    cal_scores = scores
    if cfg.calibrate_masked:
        cal_scores = key_scores(masked_scores(model, attr_emb, cosine, visual, [data.texts[i] for i in vi], pos, vocab),
                                groups, scale)
    cal = calibrate(cal_scores, pos, list(keys), cfg.target_precision, cfg.shrinkage, cfg.min_threshold, seed,
                    known=known if cfg.calibrate_on == "known_keys" else None, min_positives=cfg.min_heldout_positives,
                    min_key_recall=cfg.min_key_recall)
    cal.groups, cal.scale = groups, scale
    bundle.calibration = cal
    above = known & (cal_scores >= cal.thresholds)  # the pairs the encoder would assign, judged by the extraction
    metrics = {
        "heldout_reliability": reliability({"confidence": cal.confidence(cal_scores)[above].astype(float),
                                            "correct": pos[above].astype(np.int8)}),
        "heldout": retrieval_metrics(scores, pos, k=10),
        "heldout_masked": retrieval_metrics(cal_scores, pos, k=10),
        "train_products": int(len(train_idx)), "heldout_products": int(len(vi)), "attributes": len(vocab),
        "attributes_with_heldout_positives": int(pos.any(0).sum()),
        "assignable_attributes": int((cal.thresholds < 1.0).sum()),
        "heldout_key_recall": {k: round(r, 4) for k, r in key_recall(cal.positives, cal.recall, list(keys)).items()},
        "assignable_keys": sorted({k for k, t in zip(keys, cal.thresholds) if t < 1.0}),
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
    return TrainResult(bundle, history, metrics, cal, scores, pos, [data.ids[i] for i in vi])


class TrainingImages:
    """The training products' images through the frozen vision stages (:meth:`image_features`), computed
    once (the pretrained stages do not change) and kept as float16, taken from ``stored`` features where a
    product's photo is unchanged (``encoders/features.py``); without frozen stages, each batch is normalized
    from the pixels. ``computed``: how many products were decoded here."""

    def __init__(self, model: torch.nn.Module, data: ProductSet, device: str, stored: FeatureStore | None = None,
                 threads: int = 2, batch_size: int = 256) -> None:
        self.model, self.device = model, device
        self.cache: ImageFeatures | None = None
        rows = stored.lookup(data.ids, data.content_hash) if stored is not None else np.full(len(data.ids), -1)
        todo = np.flatnonzero(rows < 0)
        self.pixels, ok, _ = decode_images([data.image_paths[i] for i in todo], model.image_size, threads=threads)
        self.has_image = np.ones(len(rows), dtype=bool)
        self.has_image[todo] = ok
        self.computed = int(len(todo))
        if getattr(model, "frozen_stages", None) is None:
            return  # nothing frozen: no store is read (feature_digest is None), so every row was decoded
        model.eval()
        starts = tqdm(range(0, len(todo), batch_size), desc="frozen image features", unit=" batch",
                      disable=len(todo) <= batch_size)
        with torch.no_grad():
            parts = [model.image_features(torch.as_tensor(self.pixels[i:i + batch_size], device=device))
                     .to("cpu", torch.float16) for i in starts]
        self.pixels = None
        fresh = ImageFeatures(*(torch.cat(p) for p in zip(*parts))) if parts else None
        if stored is None or len(todo) == len(rows):
            self.cache = fresh
            return
        old = stored.features.take(torch.as_tensor(rows[rows >= 0]))
        order = torch.as_tensor(np.argsort(np.concatenate([np.flatnonzero(rows >= 0), todo]), kind="stable"))
        self.cache = ImageFeatures(*(torch.cat([o, f])[order] if f is not None else o[order]
                                     for o, f in zip(old, fresh or (None, None))))

    def batch(self, index: np.ndarray) -> ImageFeatures:
        if self.cache is None:
            return self.model.image_features(torch.as_tensor(self.pixels[index], device=self.device))
        return self.cache.take(torch.as_tensor(index)).to(self.device, torch.float32)

    @torch.no_grad()
    def visual_embeddings(self, index: np.ndarray, has_image: np.ndarray, batch_size: int = 512) -> torch.Tensor:
        """Normalized image embeddings of the products at ``index`` (eval mode), on the model's device."""
        out = [self.model.visual_embedding(self.batch(index[i:i + batch_size]),
                                           torch.as_tensor(has_image[i:i + batch_size], device=self.device))
               for i in range(0, len(index), batch_size)]
        return torch.cat(out).float() if out else torch.zeros((0, 1), device=self.device)


@torch.no_grad()
def combine_texts(model: torch.nn.Module, visual: torch.Tensor, token_ids: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Product embeddings ``[N, D]`` from precomputed image embeddings and (possibly masked) product texts."""
    out = []
    for i in range(0, len(token_ids), batch_size):
        ids = torch.as_tensor(token_ids[i:i + batch_size], dtype=torch.long, device=visual.device)
        out.append(model.combine(visual[i:i + batch_size], model.text_embedding(ids)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def masked_scores(model: torch.nn.Module, attr_emb: np.ndarray, scores: np.ndarray, visual: torch.Tensor,
                  texts: list[str], positive: np.ndarray, vocab: list[tuple[str, str]]) -> np.ndarray:
    """Held-out cosines ``scores [N, V]`` where each key's columns are recomputed from product texts with that
    key's extracted values masked out (``data.mask_values``): what the encoder says when the text does not
    name the value, i.e. from the photo and the rest of the text. Only products whose text changed are
    re-embedded; their image embeddings ``visual [N, D]`` are computed once; ``attr_emb`` are the attribute
    embeddings ``scores`` came from."""
    keys = np.array([k for k, _ in vocab])
    values = np.array([v for _, v in vocab], dtype=object)
    out = scores.copy()
    for key in sorted(set(keys)):
        cols = np.flatnonzero(keys == key)
        masked = [mask_values(t, list(values[cols[positive[r, cols]]])) for r, t in enumerate(texts)]
        changed = np.array([r for r, (m, t) in enumerate(zip(masked, texts)) if m != t], dtype=np.int64)
        if len(changed):
            emb = combine_texts(model, visual[torch.as_tensor(changed, device=visual.device)],
                                model.tokenize([masked[r] for r in changed]))
            out[np.ix_(changed, cols)] = emb @ attr_emb[cols].T
    return out


def run_train(ctx) -> dict[str, Any]:
    """Stage entry: read the catalogue and curated attributes, train, write ``encoder/``."""
    cfg: EncoderConfig = ctx.cfg.encoder
    layout = ctx.layout
    vocab = load_vocabulary(layout.vocabulary)
    sample = training_sample(layout.products, layout.curated_attributes, vocab, cfg.sample_products,
                             ctx.cfg.run.seed, ctx.cfg.ray)
    result = train_encoder(cfg, sample.products, vocab, sample.positives, layout.dir("encoder"),
                           exclusive=sample.exclusive_keys(cfg.exclusive_share), seed=ctx.cfg.run.seed,
                           device=ctx.cfg.run.device)
    h = result.metrics["heldout"]
    return {"epochs": len(result.history), "final_loss": round(result.history[-1]["loss"], 4) if result.history else None,
            "train_products": result.metrics["train_products"], "heldout_products": result.metrics["heldout_products"],
            "attr_to_product_recall@10": round(h.get("attr_to_product_recall", 0.0), 4),
            "product_to_attr_recall@10": round(h.get("product_to_attr_recall", 0.0), 4),
            "assignable_attributes": result.metrics["assignable_attributes"], "model_version": result.bundle.version}
