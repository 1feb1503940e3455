"""Per-attribute decision thresholds chosen on held-out pairs, and a confidence mapping.

For each attribute the threshold is the lowest cosine at which its held-out precision still reaches
``target_precision`` (positives are the curated extraction, so precision is a lower bound). Rare
attributes have few held-out positives and noisy thresholds, and contrastive training smooths the long
tail toward the frequent values, so each threshold is blended with its key's pooled threshold by a
frequency-based weight ``n / (n + shrinkage)``: frequent attributes keep their own, rare ones lean on
the key's. An attribute that cannot reach the target on its own held-out pairs (or has fewer than
``min_positives`` of them) is never assigned: falling back on its key's threshold admitted rare values
at a precision far below the target. Nor is any value of a key whose held-out recall at these thresholds
is below ``min_key_recall``: there the model only catches a few lucky near-duplicates (brand, from a
photo), and such hits did not carry over to the catalogue. Confidence is a logistic fit of "is a
positive" on the margin ``score - centre``, one per key (keys differ in how sharp their scores are); a
column's centre is its threshold, except on single-valued keys (below).

Scores are cosines, except on single-valued keys (colour, category), where a value's score is its
softmax probability among the key's values (:func:`key_scores`, at the model's logit scale): a cosine
says how close a product is to "black", the softmax also how far it is from "navy blue", and ranking the
encoder's answers by that margin is what lets it reach the target precision on a key. There confidence is
fitted on the key's answers alone: a logistic function of the answer's probability (centre 0) with one
slope per key and an intercept per value (:func:`_fit_answers`). Centred on each value's own threshold
instead, a rare value's low threshold ranked its answers above more probable ones: held-out colour recall
at 0.85 precision against the dev labels was 0.30 so, 0.35 with one curve for the key, 0.37 with an
intercept per value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

NEVER = 1.01  # a cosine threshold no score reaches
UNFITTED = (10.0, 0.0)  # slope and intercept where the held-out pairs are all of one class: a step at the centre


def precision_threshold(scores: np.ndarray, positive: np.ndarray, target: float) -> tuple[float, float, float]:
    """(threshold, precision, recall) of the lowest threshold whose precision is >= ``target``; NEVER if none."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return NEVER, 0.0, 0.0
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    tp = np.cumsum(positive[order])
    precision = tp / np.arange(1, len(order) + 1)
    cut = np.r_[ranked[:-1] > ranked[1:], True]  # a threshold admits every tied score, so cut after ties only
    ok = np.flatnonzero((precision >= target) & cut)
    if len(ok) == 0:
        return NEVER, 0.0, 0.0
    k = ok[-1]
    return float(scores[order[k]]), float(precision[k]), float(tp[k] / n_pos)


@dataclass
class Calibration:
    """Thresholds and statistics per attribute (aligned with the vocabulary order) plus the confidence map."""

    thresholds: np.ndarray
    positives: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    platt: np.ndarray  # [2, V]: slope and intercept of each column's confidence curve
    groups: np.ndarray | None = None  # [V] int: single-valued key of each column (-1: cosine score), see key_scores
    scale: float = 1.0  # the softmax's logit scale
    centres: np.ndarray | None = None  # [V]: the score each column's confidence is centred on (None: its threshold)
    floors: np.ndarray | None = None  # [V]: the cosine a column must reach to be answered at all (scope_floors)

    def scores(self, cosine: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """The scores thresholds and confidences apply to, from cosines ``[N, V]`` (:func:`key_scores`)."""
        return cosine if self.groups is None else key_scores(cosine, self.groups, self.scale)

    def answers(self, scores: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """``[N, V]`` bool: which scores may be answers. On a single-valued key only its most probable value (the
        softmax's argmax): a rare value's low threshold gave it the larger margin, and so the larger confidence,
        over a more probable frequent one (held-out colour top-1 against the dev labels 0.56 by margin, 0.65 by
        probability). Every column of the other keys."""
        return key_answers(scores, np.full(len(self.thresholds), -1) if self.groups is None else self.groups)

    def in_scope(self, cosine: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """``[N, V]`` bool: which cosines reach their column's floor (all of them without floors)."""
        c = torch.as_tensor(cosine)
        out = torch.ones(c.shape, dtype=torch.bool, device=c.device) if self.floors is None else \
            c >= torch.as_tensor(self.floors, dtype=c.dtype, device=c.device)
        return out if isinstance(cosine, torch.Tensor) else out.numpy()

    def confidence(self, scores: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Calibrated probability for scores ``[N, V]`` (columns in vocabulary order): numpy in, numpy
        out; a torch tensor stays on its device (the assignment actors score on the GPU)."""
        s = torch.as_tensor(scores)
        centres = self.thresholds if self.centres is None else self.centres
        a, b, t = (torch.as_tensor(x, dtype=s.dtype, device=s.device) for x in (*self.platt, centres))
        p = torch.sigmoid(a * (s - t) + b)
        return p if isinstance(scores, torch.Tensor) else p.numpy()


def key_scores(cosine: np.ndarray | torch.Tensor, groups: np.ndarray, scale: float) -> np.ndarray | torch.Tensor:
    """Cosines ``[N, V]`` with the columns of each group (``groups[v] >= 0``: one single-valued key)
    replaced by the softmax over that group at ``scale``; numpy in, numpy out, torch stays on its device."""
    s = torch.as_tensor(cosine)
    out = s.clone()
    for cols in _group_columns(groups, s.device):
        out[:, cols] = torch.softmax(scale * s[:, cols].float(), dim=1).to(s.dtype)
    return out if isinstance(cosine, torch.Tensor) else out.numpy()


def key_answers(scores: np.ndarray | torch.Tensor, groups: np.ndarray) -> np.ndarray | torch.Tensor:
    """``[N, V]`` bool: each group's most probable column per row (``groups[v] >= 0``: one single-valued key),
    every column outside the groups; numpy in, numpy out, torch stays on its device."""
    s = torch.as_tensor(scores)
    out = torch.ones(s.shape, dtype=torch.bool, device=s.device)
    for cols in _group_columns(groups, s.device):
        top = cols[s[:, cols].argmax(dim=1)]
        out[:, cols] = False
        out[torch.arange(len(s), device=s.device), top] = True
    return out if isinstance(scores, torch.Tensor) else out.numpy()


def _group_columns(groups: np.ndarray, device: torch.device) -> list[torch.Tensor]:
    """The column indices of each single-valued key's group (``groups[v] >= 0``), on ``device``."""
    g = torch.as_tensor(np.asarray(groups), device=device)
    return [torch.nonzero(g == group).squeeze(1) for group in torch.unique(g[g >= 0]).tolist()]


def scope_floors(cosine: np.ndarray, known: np.ndarray, keys: list[str], scoped: list[str],
                 quantile: float) -> np.ndarray:
    """``[V]`` cosine floors: for each column of a ``scoped`` key, the ``quantile`` of the key's best cosine over the
    held-out products ``known [N, V]`` marks as having some value of it; -inf elsewhere. A product further from
    every value of a neckline than nearly all products with one (a shoe, a watch) is outside the key's scope, and
    the key's most probable value there is only the least unrelated phrase (measured on the dev catalogue: the
    encoder put "polo collar" on about 4,700 shoes, belts and wallets)."""
    key_of = np.array(keys)
    floors = np.full(len(keys), -np.inf, np.float32)
    for key in sorted(set(scoped) & set(keys)):
        cols = np.flatnonzero(key_of == key)
        inside = known[:, cols].any(1)
        if inside.any():
            floors[cols] = np.quantile(cosine[np.ix_(inside, cols)].max(1), quantile)
    return floors


def key_groups(keys: list[str], single_valued: list[str]) -> np.ndarray:
    """``[V]`` group ids for :func:`key_scores`: one per single-valued key with at least two values, -1 elsewhere."""
    names = sorted({k for k in single_valued if keys.count(k) > 1})
    return np.array([names.index(k) if k in names else -1 for k in keys], dtype=np.int64)


def calibrate(scores: np.ndarray, positive: np.ndarray, keys: list[str], target_precision: float = 0.85,
              shrinkage: float = 20.0, min_threshold: float = 0.0, seed: int = 0,
              known: np.ndarray | None = None, min_positives: int = 1, min_key_recall: float = 0.0,
              groups: np.ndarray | None = None, scale: float = 1.0) -> Calibration:
    """Fit thresholds on held-out ``scores [N, V]`` against binary ``positive [N, V]``; ``keys[v]`` is v's key;
    ``groups`` and ``scale`` as :func:`key_scores` computed ``scores`` with them (None: cosines).

    ``known [N, V]`` (default: all True) marks the pairs whose truth is known. Extraction labels are
    partial: a product without any value for a key (no pattern found in its text) is no evidence
    against a pattern value, so only products with some value of the key should count as negatives.
    """
    if scores.shape != positive.shape or scores.shape[1] != len(keys):
        raise ValueError(f"scores {scores.shape}, positives {positive.shape} and {len(keys)} keys do not line up")
    known = np.ones(scores.shape, bool) if known is None else known.astype(bool)
    n_attr = scores.shape[1]
    key_of = np.array(keys)
    key_threshold: dict[str, float] = {}
    for key in sorted(set(keys)):
        cols = np.flatnonzero(key_of == key)
        k = known[:, cols]
        key_threshold[key], _, _ = precision_threshold(scores[:, cols][k], positive[:, cols][k], target_precision)
    thresholds = np.full(n_attr, NEVER, np.float32)
    stats = np.zeros((3, n_attr), np.float32)
    for v in range(n_attr):
        rows = known[:, v]
        n = float(positive[rows, v].sum())
        stats[0, v] = n
        own, _, _ = precision_threshold(scores[rows, v], positive[rows, v], target_precision)
        if own >= NEVER or n < min_positives:
            continue
        weight = n / (n + shrinkage) if shrinkage > 0 and key_threshold[keys[v]] < NEVER else 1.0
        t = max(min_threshold, weight * own + (1 - weight) * key_threshold[keys[v]])
        thresholds[v] = t
        hit = scores[rows, v] >= t
        tp = float((hit & positive[rows, v]).sum())
        stats[1:, v] = (tp / max(1, hit.sum()), tp / n)  # held-out precision and recall at the final threshold
    for key, recall in key_recall(stats[0], stats[2], keys).items():
        if recall < min_key_recall:  # the model barely sees this key: its few hits do not generalise
            thresholds[key_of == key] = NEVER
    single = np.zeros(n_attr, bool) if groups is None else np.asarray(groups) >= 0
    centres = np.where(single, 0.0, thresholds).astype(np.float32)
    answers = key_answers(scores, groups) if groups is not None else None  # each single-valued key's answer
    platt = np.zeros((2, n_attr), np.float32)
    for key in sorted(set(keys)):
        cols = np.flatnonzero(key_of == key)
        fit = known[:, cols] & (thresholds[cols] < NEVER)  # fitted on the attributes that can be assigned
        if single[cols[0]]:  # single-valued: only the key's answers are scored
            platt[:, cols] = _fit_answers(scores[:, cols], positive[:, cols], fit & answers[:, cols])
            continue
        platt[:, cols] = np.array(_fit_platt((scores[:, cols] - centres[cols])[fit], positive[:, cols][fit],
                                             seed), np.float32)[:, None]
    return Calibration(thresholds, stats[0].astype(np.int64), stats[1], stats[2], platt, groups, scale, centres)


def key_recall(positives: np.ndarray, recall: np.ndarray, keys: list[str]) -> dict[str, float]:
    """Per key, the share of its held-out positives recovered at the attributes' thresholds."""
    key_of = np.array(keys)
    return {key: float((positives * recall)[key_of == key].sum() / max(1.0, positives[key_of == key].sum()))
            for key in sorted(set(keys))}


def _fit_answers(scores: np.ndarray, positive: np.ndarray, fit: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """``[2, C]`` slopes and intercepts for a single-valued key's columns, fitted on the answers ``fit`` marks
    (at most one per row): a logistic regression of "is a positive" on the answer's probability, with one
    slope for the key and an intercept per value, L2-shrunk toward the key's (``strength``: sklearn's C), so
    a value whose answers are often wrong (black on every dark photo) is trusted less at the same probability."""
    rows, col = np.nonzero(fit)
    out = np.tile(np.array(UNFITTED, np.float32)[:, None], (1, scores.shape[1]))
    y = positive[rows, col].astype(int)
    if len(y) == 0 or y.min() == y.max():
        return out
    x = np.concatenate([scores[rows, col][:, None], np.eye(scores.shape[1])[col]], axis=1)
    model = LogisticRegression(C=strength).fit(x, y)
    out[0] = model.coef_[0, 0]
    out[1] = model.intercept_[0] + model.coef_[0, 1:]
    return out


def _fit_platt(margin: np.ndarray, positive: np.ndarray, seed: int, max_pairs: int = 400_000) -> tuple[float, float]:
    """Logistic regression of positive on the margin (a balanced subsample keeps it fast)."""
    x, y = margin.ravel(), positive.ravel().astype(int)
    if len(y) == 0 or y.min() == y.max():
        return UNFITTED
    rng = np.random.default_rng(seed)
    prior_shift = 0.0
    if len(x) > max_pairs:
        neg = np.flatnonzero(y == 0)
        keep = rng.choice(neg, min(len(neg), max_pairs), replace=False)
        prior_shift = float(np.log(len(keep) / len(neg)))  # undo the negatives' subsampling in the intercept
        pick = np.concatenate([np.flatnonzero(y == 1), keep])
        x, y = x[pick], y[pick]
    model = LogisticRegression(C=10.0).fit(x.reshape(-1, 1), y)
    return float(model.coef_[0, 0]), float(model.intercept_[0]) + prior_shift
