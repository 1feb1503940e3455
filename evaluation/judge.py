"""Judging products and collections against ground-truth labels.

A collection is a list of ``(family, canonical value)`` attributes (see
:func:`pinlanding.evaluation.mapping.attr_key`) and a ranked product list. A product is *relevant* when its labels match every
attribute; *unknown* when it has no label for some attribute's family (it is then left out, the
"condensed list" of Sakai 2007, and the strict figure counts it as not relevant).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pinlanding.evaluation import metrics
from pinlanding.evaluation.intent import Lexicon
from pinlanding.evaluation.labels import Labels
from pinlanding.evaluation.mapping import FAMILIES, accepted_values

Attr = tuple[str, str]


@dataclass
class Judge:
    """Label lookups aligned to a product order, as boolean arrays for vectorised judging."""

    labels: Labels
    product_ids: Sequence[str]
    lexicon: Lexicon | None = None  # decomposes compound values ("printed t-shirt"); None: no decomposition
    _pos: dict[str, int] = field(init=False, repr=False)
    _has: dict[str, np.ndarray] = field(init=False, repr=False)
    _values: dict[str, dict[str, np.ndarray]] = field(init=False, repr=False)
    _cache: dict[Attr, tuple[np.ndarray, np.ndarray] | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pos = {pid: i for i, pid in enumerate(self.product_ids)}
        n = len(self.product_ids)
        self._has, self._values, self._cache = {}, {}, {}
        for family, per_pid in self.labels.values.items():
            has = np.zeros(n + 1, dtype=bool)  # the extra last slot stands for unknown product ids
            values: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(n + 1, dtype=bool))
            for pid, vals in per_pid.items():
                i = self._pos.get(pid)
                if i is None:
                    continue
                has[i] = True
                for v in vals:
                    values[v][i] = True
            self._has[family], self._values[family] = has, dict(values)

    def index(self, product_ids: Sequence[str]) -> np.ndarray:
        """Positions of ``product_ids`` (unknown ids point at the all-False slot)."""
        unknown = len(self.product_ids)
        return np.fromiter((self._pos.get(str(p), unknown) for p in product_ids), dtype=np.int64,
                           count=len(product_ids))

    def accepted(self, family: str, value: str) -> set[str]:
        """Label values the attribute accepts (empty: no label can judge it)."""
        return accepted_values(family, value, self._values.get(family, {}))

    def parts(self, family: str, value: str) -> list[Attr] | None:
        """The attributes a value is judged on: itself when a label value accepts it; else, for a compound
        value, the attributes the general lexicon finds in it, provided one is of its own family and all
        are judgeable ("printed t-shirt" -> pattern=printed, category=tshirt); else None."""
        if family not in FAMILIES:
            return None
        if self.accepted(family, value):
            return [(family, value)]
        if self.lexicon is None:
            return None
        found = sorted(self.lexicon.parse(value)[0])
        if not any(f == family for f, _ in found) or not all(self.accepted(*a) for a in found):
            return None
        return found

    def attribute(self, family: str, value: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(match, has_label)`` arrays over all products, or None when the value cannot be judged."""
        key = (family, value)
        if key not in self._cache:
            parts = self.parts(family, value)
            if parts is None:
                self._cache[key] = None
            else:
                match = np.ones(len(self.product_ids) + 1, dtype=bool)
                has = np.ones(len(self.product_ids) + 1, dtype=bool)
                for fam, val in parts:
                    one = np.zeros(len(self.product_ids) + 1, dtype=bool)
                    for v in self.accepted(fam, val):
                        one |= self._values[fam][v]
                    match &= one
                    has &= self._has[fam]
                match[-1] = has[-1] = False
                self._cache[key] = (match, has)
        return self._cache[key]


def unjudgeable(judge: Judge, attrs: Sequence[Attr]) -> str | None:
    """Why a collection cannot be judged on all its attributes, or None when it can."""
    if not attrs:
        return "no attributes"
    for attr in attrs:
        if attr[0] not in FAMILIES:
            return f"key '{attr[0]}' has no label family"
        if judge.attribute(*attr) is None:
            return f"no label value for {attr[0]}={attr[1]}"
    return None


def judge_collection(judge: Judge, attrs: Sequence[Attr], product_ids: Sequence[str],
                     scores: Sequence[float] | None, k: int) -> dict[str, Any]:
    """Precision@k (condensed and strict), NDCG@k and per-family precision of one collection.

    Products are in rank order; ``scores`` (same order) mark ties. A collection with an attribute no
    label can judge gets per-family figures for the attributes that can be, and ``reason`` says why
    it has no overall figure.
    """
    out: dict[str, Any] = {"judged": False, "reason": None, "precision": None, "precision_strict": None,
                           "ndcg": None, "judged_products": 0, "catalogue_matches": None, "families": {}}
    if len(product_ids) == 0:
        out["reason"] = unjudgeable(judge, attrs) or "empty feed"
        return out
    idx = judge.index(product_ids)
    sc = None if scores is None else np.asarray(scores, dtype=float)
    for attr in attrs:
        if judge.attribute(*attr) is None:
            continue
        match, has = judge.attribute(*attr)
        keep = has[idx]
        if keep.any():
            out["families"].setdefault(attr[0], []).append(
                metrics.precision_at_k(match[idx][keep].tolist(), k, None if sc is None else sc[keep].tolist()))
    out["families"] = {f: metrics.mean(v) for f, v in out["families"].items()}
    reason = unjudgeable(judge, attrs)
    if reason:
        out["reason"] = reason
        return out
    arrays = [judge.attribute(*a) for a in attrs]
    known = np.logical_and.reduce([h for _, h in arrays])
    gains = np.mean([m for m, _ in arrays], axis=0)
    out["catalogue_matches"] = int(((gains == 1.0) & known)[:-1].sum())
    keep = known[idx]
    out["judged_products"] = int(keep[:k].sum())
    rel_all = (gains[idx] == 1.0).astype(float)
    out["precision_strict"] = metrics.precision_at_k(rel_all.tolist(), k, None if sc is None else sc.tolist())
    if not keep.any():
        out["reason"] = "no labelled product in the feed"
        return out
    g, s = gains[idx][keep], (None if sc is None else sc[keep].tolist())
    out["precision"] = metrics.precision_at_k((g == 1.0).astype(float).tolist(), k, s)
    catalogue = gains[:-1][known[:-1]]
    ideal = -np.partition(-catalogue, k - 1)[:k] if len(catalogue) > k else catalogue
    out["ndcg"] = metrics.ndcg_at_k(g.tolist(), k, s, ideal=ideal.tolist())
    out["judged"] = True
    return out
