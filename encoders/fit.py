"""The training loop of the dual encoder: AdamW (the pretrained trunk at a lower rate) with a warm-up and
cosine schedule, the bidirectional multi-positive contrastive loss (negatives: the other attributes in the
batch) plus the per-key softmax loss, half the texts with the curated values' words masked out, a fixed
number of epochs, and checkpoints every ``checkpoint_every`` epochs. A rerun with the same setup resumes from
``encoder/checkpoint.safetensors`` (raising ``epochs`` continues training); the checkpoint holds the RNG
states, so a resumed run ends with the same model as an uninterrupted one."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pinlanding.collections.artifacts import AnyPath, json_digest
from pinlanding.encoders.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from pinlanding.encoders.clip import key_softmax_loss, multi_positive_clip_loss
from pinlanding.encoders.config import EncoderConfig
from pinlanding.encoders.data import ProductSet, attribute_phrase
from pinlanding.encoders.images import TrainingImages


@dataclass
class TrainingSet:
    """The training inputs: products, their images, token ids with and without their values' words, and the
    curated attributes (vocabulary indices) of each product."""

    data: ProductSet
    images: TrainingImages
    tokens: np.ndarray
    blind: np.ndarray
    positives: dict[str, list[int]]
    train_idx: np.ndarray


def lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return f


def fit(model: torch.nn.Module, spec: dict[str, Any], cfg: EncoderConfig, ts: TrainingSet,
        vocab: list[tuple[str, str]], out_dir: AnyPath, seed: int, device: str, log=print
        ) -> tuple[list[dict[str, float]], bool]:
    """Train ``model`` in place; returns (per-epoch history, whether ``encoder.max_train_seconds`` stopped it)."""
    data, images, train_idx, has_image = ts.data, ts.images, ts.train_idx, ts.images.has_image
    phrases = [attribute_phrase(k, v) for k, v in vocab]
    pos_lists = [np.asarray(ts.positives[pid], dtype=np.int64) for pid in data.ids]
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
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(epochs * steps_per_epoch, max(1, steps_per_epoch // 2)))
    setup = json_digest({"spec": spec, "lr": cfg.resolved("lr"), "wd": cfg.weight_decay, "bs": batch_size,
                         "seed": seed, "drop": cfg.image_dropout, "text_mask": cfg.resolved("text_mask"), "key_loss": cfg.key_loss_weight,
                         "train": [data.ids[i] for i in train_idx],
                         "positives": [ts.positives[data.ids[i]] for i in train_idx],  # the targets, not only the ids
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
            text = np.where((rng.random(len(b)) < cfg.resolved("text_mask"))[:, None], ts.blind[b], ts.tokens[b])
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
    return history, stopped_early
