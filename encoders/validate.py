"""Held-out evaluation and calibration of a trained dual encoder: score the held-out products against every
vocabulary attribute (Recall@10), score them again with each key's extracted words masked out of their text,
and choose per-attribute thresholds and confidences on those masked scores (the encoder fills keys whose words
a product's text lacks, so that is the case its thresholds must hold for)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pinlanding.encoders.bundle import EncoderBundle
from pinlanding.encoders.calibrate import Calibration, calibrate, key_groups, key_recall, key_scores, scope_floors
from pinlanding.encoders.config import EncoderConfig
from pinlanding.encoders.data import ProductSet, mask_words, value_words
from pinlanding.encoders.images import TrainingImages
from pinlanding.encoders.metrics import reliability, retrieval_metrics


@dataclass
class Validation:
    """What the held-out products tell: the calibration, the metrics, the (unmasked) scores and positives."""

    calibration: Calibration
    metrics: dict[str, Any]
    scores: np.ndarray
    positive: np.ndarray


def positive_matrix(ids: list[str], positives: dict[str, list[int]], n_attr: int) -> np.ndarray:
    out = np.zeros((len(ids), n_attr), dtype=bool)
    for row, pid in enumerate(ids):
        out[row, positives.get(pid, [])] = True
    return out


def validate(bundle: EncoderBundle, cfg: EncoderConfig, images: TrainingImages, data: ProductSet,
             val_idx: np.ndarray, tokens: np.ndarray, positives: dict[str, list[int]], seed: int) -> Validation:
    """Score the held-out products ``val_idx`` of ``data`` (``tokens``: every product's token ids), calibrate on
    their masked scores and set ``bundle.calibration``."""
    model, vocab, exclusive = bundle.model, bundle.vocab, bundle.exclusive_keys
    keys = np.array([k for k, _ in vocab])
    model.eval()
    visual = images.visual_embeddings(val_idx, images.has_image[val_idx])
    attr_emb = bundle.attribute_embeddings()
    groups = key_groups(list(keys), exclusive)
    scale = float(model.logit_scale.detach().exp().clamp(max=100))
    cosine = combine_texts(model, visual, tokens[val_idx]) @ attr_emb.T
    scores = key_scores(cosine, groups, scale)
    pos = positive_matrix([data.ids[i] for i in val_idx], positives, len(vocab))
    has_key = {key: pos[:, keys == key].any(1) for key in set(keys)}  # products with some value of the key
    known = np.stack([has_key[k] for k in keys], axis=1)
    cal_cosine = cosine
    if cfg.calibrate_masked:
        cal_cosine = masked_scores(model, attr_emb, cosine, visual, [data.texts[i] for i in val_idx], vocab)
    cal_scores = key_scores(cal_cosine, groups, scale)
    cal = calibrate(cal_scores, pos, list(keys), cfg.target_precision, cfg.shrinkage, cfg.min_threshold, seed,
                    known=known if cfg.calibrate_on == "known_keys" else None, min_positives=cfg.min_heldout_positives,
                    min_key_recall=cfg.min_key_recall, groups=groups, scale=scale)
    cal.floors = scope_floors(cal_cosine, known, list(keys), cfg.scoped_keys, cfg.scope_quantile)
    bundle.calibration = cal
    # the pairs the encoder would assign, judged by the extraction
    above = known & (cal_scores >= cal.thresholds) & cal.in_scope(cal_cosine)
    metrics = {
        "heldout_reliability": reliability({"confidence": cal.confidence(cal_scores)[above].astype(float),
                                            "correct": pos[above].astype(np.int8)}),
        "heldout": retrieval_metrics(scores, pos, k=10),
        "heldout_masked": retrieval_metrics(cal_scores, pos, k=10),
        "heldout_products": int(len(val_idx)), "attributes": len(vocab),
        "attributes_with_heldout_positives": int(pos.any(0).sum()),
        "assignable_attributes": int((cal.thresholds < 1.0).sum()),
        "heldout_key_recall": {k: round(r, 4) for k, r in key_recall(cal.positives, cal.recall, list(keys)).items()},
        "assignable_keys": sorted({k for k, t in zip(keys, cal.thresholds) if t < 1.0}),
    }
    return Validation(cal, metrics, scores, pos)


@torch.no_grad()
def combine_texts(model: torch.nn.Module, visual: torch.Tensor, token_ids: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Product embeddings ``[N, D]`` from precomputed image embeddings and (possibly masked) product texts."""
    out = []
    for i in range(0, len(token_ids), batch_size):
        ids = torch.as_tensor(token_ids[i:i + batch_size], dtype=torch.long, device=visual.device)
        out.append(model.combine(visual[i:i + batch_size], model.text_embedding(ids)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def masked_scores(model: torch.nn.Module, attr_emb: np.ndarray, scores: np.ndarray, visual: torch.Tensor,
                  texts: list[str], vocab: list[tuple[str, str]]) -> np.ndarray:
    """Held-out cosines ``scores [N, V]`` where each key's columns are recomputed from product texts with every
    value of that key masked out (``data.mask_words``), not only the product's extracted ones: what the
    encoder says when the text names none of the key's values, i.e. from the photo and the rest of the text
    (masking only the extracted values left shades such as "charcoal" beside an extracted "grey"). Only
    products whose text changed are re-embedded; their image embeddings ``visual [N, D]`` are computed once;
    ``attr_emb`` are the attribute embeddings ``scores`` came from."""
    keys = np.array([k for k, _ in vocab])
    values = np.array([v for _, v in vocab], dtype=object)
    out = scores.copy()
    for key in sorted(set(keys)):
        cols = np.flatnonzero(keys == key)
        words = value_words(values[cols])  # every value of the key: a shade beside the extracted colour goes too
        masked = [mask_words(t, words) for t in texts]
        changed = np.array([r for r, (m, t) in enumerate(zip(masked, texts)) if m != t], dtype=np.int64)
        if len(changed):
            emb = combine_texts(model, visual[torch.as_tensor(changed, device=visual.device)],
                                model.tokenize([masked[r] for r in changed]))
            out[np.ix_(changed, cols)] = emb @ attr_emb[cols].T
    return out
