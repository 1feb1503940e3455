"""The vocab stage: raw extracted attributes -> a compact, reviewed shopping vocabulary.

Recipe (:meth:`VocabCurator.fit`), one private method per step, each counted in the report:
sanitize (drop unusable values with a reason) -> exact normalization -> frequency filter -> embedding
clustering of the kept values -> attachment of rare variants -> review decisions (split is a constraint
on clustering; rename/merge/approve/reject apply to the result). Every merge is a row of
``vocabulary/merges.parquet``, every drop a row of ``vocabulary/dropped.parquet``.

The driver never holds the attributes: :func:`count_raw` turns one part of them into partial counts
(:class:`RawCounts`, distinct products per value, co-occurrences, drops), the driver merges the parts'
counts (products never span parts, so counts add up) and fits on them; then each part is mapped to
canonical values and written as the same part of ``vocabulary/attributes.parquet``
(:func:`canonicalize`), returning the counts the vocabulary rows and the report need.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from functools import partial
from itertools import combinations
from typing import Any, Callable, Iterable, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from pinlanding.collections.artifacts import (AnyPath, as_path, json_digest, list_files, read_json, write_json,
                                              write_table, write_text)
from pinlanding.collections.config import RayConfig
from pinlanding.collections.engines import map_parts
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import Part, commit_parts, count_rows, part_names, read_part, write_part
from pinlanding.collections.schemas import ATTRIBUTES, VOCAB, VOCAB_DROPPED, VOCAB_MERGES
from pinlanding.vocab.categories import CategoryRules, Verdict, head_fragments, words_of
from pinlanding.collections.text import key_form
from pinlanding.vocab.clustering import (EmbeddingCache, ValueClusterer, attach, lexically_distinct, normalize_value,
                                         sanitize_value)
from pinlanding.vocab.config import ClusterConfig, EvidenceConfig, VocabConfig
from pinlanding.vocab.decisions import ReviewState, decisions_path, load_review_state

RARE_LIMIT = 10  # the report's "share of values used by fewer than 10 products"


@dataclass
class _Group:
    """Values of one key that share a normalized form."""

    norm: str
    surfaces: Counter  # clean surface form -> products
    count: int  # products carrying any of the surfaces
    head: str | None = None  # normalized form of its canonical group (None: dropped)
    method: str = "normalize"
    similarity: float | None = None


# --- per-part partial counts ---------------------------------------------------------------------

C = TypeVar("C")


@dataclass
class ValueStats:
    """Report statistics of an attribute table: distinct (product, key, value) rows, products, products per value."""

    rows: int = 0
    products: int = 0
    per_value: Counter = field(default_factory=Counter)  # (key, value) -> products


@dataclass
class RawCounts:
    """What the curator learns from: partial counts of raw attributes over some products (one part, or merged)."""

    rows_in: int = 0
    by_reason: Counter = field(default_factory=Counter)  # sanitize reason -> rows dropped
    bad: Counter = field(default_factory=Counter)  # (key, raw value, reason) -> products
    surfaces: Counter = field(default_factory=Counter)  # (key, norm, clean) -> products
    groups: Counter = field(default_factory=Counter)  # (key, norm) -> products
    co: Counter = field(default_factory=Counter)  # (key, norm a, norm b), a < b -> products carrying both
    keys: Counter = field(default_factory=Counter)  # key -> products carrying any value of it
    strong: Counter = field(default_factory=Counter)  # (key, norm) -> products with it from a non-weak source
    stats: ValueStats = field(default_factory=ValueStats)  # of the raw table, for the report


@dataclass
class CuratedCounts:
    """Partial counts of curated attributes: report statistics and products per (key, canonical, source)."""

    stats: ValueStats = field(default_factory=ValueStats)
    sources: Counter = field(default_factory=Counter)
    held: Counter = field(default_factory=Counter)  # (key, canonical) -> products, of values held for review


def merge_counts(parts: Iterable[C], empty: C) -> C:
    """Sum partial counts field by field (ints, Counters, nested count dataclasses) into ``empty``.

    Exact because one product's rows are all in one part: distinct-product counts of parts add up.
    Counters keep first-seen order, so ties later sorted stably fall as on the whole table.
    """
    for part in parts:
        _add(empty, part)
    return empty


def _add(acc: Any, part: Any) -> None:
    for f in fields(acc):
        a, b = getattr(acc, f.name), getattr(part, f.name)
        if isinstance(a, Counter):
            a.update(b)
        elif isinstance(a, int):
            setattr(acc, f.name, a + b)
        else:
            _add(a, b)


def _nunique(df: pd.DataFrame, by: list[str]) -> Counter:
    """Distinct products per group of ``by`` columns."""
    if df.empty:
        return Counter()
    return Counter({k: int(n) for k, n in df.groupby(by, dropna=False)["product_id"].nunique().items()})


def value_stats(table: pa.Table) -> ValueStats:
    df = table.select(["product_id", "key", "value"]).to_pandas().drop_duplicates()
    return ValueStats(rows=len(df), products=int(df["product_id"].nunique()), per_value=_nunique(df, ["key", "value"]))


def prepare(attributes: pa.Table, max_value_chars: int, fold_plurals: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normalized keys and sanitized values: (usable rows with ``clean`` and ``norm``, dropped rows with ``reason``)."""
    df = attributes.select(["product_id", "key", "value", "source", "confidence"]).to_pandas()
    df["key"] = [key_form(k) for k in df["key"]]
    uniq = {v: sanitize_value(v, max_value_chars) for v in pd.unique(df["value"])}
    df["clean"] = [uniq[v][0] for v in df["value"]]
    df["reason"] = [uniq[v][1] for v in df["value"]]
    df.loc[df["key"] == "", "reason"] = "empty_key"
    bad = df[df["reason"].notna()]
    df = df[df["reason"].isna()].drop(columns="reason")
    uniq_norm = {v: normalize_value(v, fold_plurals) for v in pd.unique(df["clean"])}
    df["norm"] = [uniq_norm[v] for v in df["clean"]]
    return df, bad


def _cooccurrence(df: pd.DataFrame) -> Counter:
    """Products carrying two normalized values of one key (only keys with multi-valued products)."""
    per = df[["product_id", "key", "norm"]].drop_duplicates()
    multi = per[per.duplicated(["product_id", "key"], keep=False)]
    out: Counter = Counter()
    for (_, key), norms in multi.groupby(["product_id", "key"])["norm"]:
        for a, b in combinations(sorted(norms), 2):
            out[(key, a, b)] += 1
    return out


def _weak(source: Any, weak_sources: frozenset[str]) -> bool:
    """Whether a row's evidence comes only from weak sources ("neighbors"; "title+neighbors" is not weak)."""
    return isinstance(source, str) and set(source.split("+")) <= weak_sources


def count_raw(attributes: pa.Table, max_value_chars: int, fold_plurals: bool,
              weak_sources: Iterable[str] = ()) -> RawCounts:
    """The curator's counts over the products of ``attributes`` (whole products: one part, or a table)."""
    df, bad = prepare(attributes, max_value_chars, fold_plurals)
    weak = frozenset(weak_sources)
    strong = df[[not _weak(s, weak) for s in df["source"]]] if weak else df
    return RawCounts(rows_in=len(df) + len(bad), by_reason=Counter(bad["reason"]),
                     bad=_nunique(bad, ["key", "value", "reason"]), surfaces=_nunique(df, ["key", "norm", "clean"]),
                     groups=_nunique(df, ["key", "norm"]), co=_cooccurrence(df),
                     keys=Counter({str(k): int(n) for k, n in df.groupby("key")["product_id"].nunique().items()}),
                     strong=_nunique(strong, ["key", "norm"]), stats=value_stats(attributes))


def _extra_rows(df: pd.DataFrame, extras: dict[tuple[str, str], list[tuple[str, str]]]) -> pd.DataFrame:
    """Rows of other keys that a value's words carry ("Winter Jacket" -> season "winter"), as ``df`` rows."""
    rows = [{**row, "key": k2, "canonical": v2}
            for row in df[["product_id", "key", "norm", "source", "confidence", "clean"]].to_dict("records")
            for k2, v2 in extras.get((row["key"], row["norm"]), ())]
    return pd.DataFrame(rows, columns=[*df.columns]) if rows else df.iloc[0:0]


def canonicalize(attributes: pa.Table, mapping: dict[tuple[str, str], str | None], max_value_chars: int,
                 fold_plurals: bool, extras: dict[tuple[str, str], list[tuple[str, str]]] | None = None,
                 held: frozenset[tuple[str, str]] = frozenset()) -> tuple[pa.Table, CuratedCounts]:
    """Rows of ``attributes`` with their canonical value (ATTRIBUTES; one per product, key, value) and their counts.

    ``mapping`` is the fitted :attr:`VocabCurator.mapping_`, ``extras`` its :attr:`~VocabCurator.extras_` (rows of
    other keys a value carries) and ``held`` the (key, canonical) values held for review: counted, not written.
    Of several rows with one canonical value the most confident is kept (a stable sort, so the choice among ties
    does not depend on how products are parted).
    """
    df, _ = prepare(attributes, max_value_chars, fold_plurals)
    df = df.assign(canonical=[mapping[(k, n)] for k, n in zip(df["key"], df["norm"])])
    if extras:
        df = pd.concat([df, _extra_rows(df, extras)], ignore_index=True)
    df = df[df["canonical"].notna()]
    sources = _nunique(df.assign(source=df["source"].fillna("unknown")), ["key", "canonical", "source"])
    df = df.sort_values("confidence", ascending=False, na_position="last", kind="stable")
    df = df.drop_duplicates(["product_id", "key", "canonical"]).sort_values(["product_id", "key", "canonical"])
    is_held = pd.Series([(k, v) in held for k, v in zip(df["key"], df["canonical"])], index=df.index, dtype=bool)
    held_counts = _nunique(df[is_held], ["key", "canonical"])
    df = df[~is_held]
    table = pa.table({"product_id": df["product_id"].astype(str).tolist(), "key": df["key"].tolist(),
                      "value": df["canonical"].tolist(), "source": df["source"].tolist(),
                      "confidence": df["confidence"].tolist(), "raw": df["clean"].tolist()})
    return table, CuratedCounts(value_stats(table), sources, held_counts)


@dataclass
class VocabCurator:
    """Fit on merged raw counts (:class:`RawCounts`); learned state: ``mapping_`` ((key, normalized value) ->
    canonical value, or None when dropped), ``dropped_``, ``steps_``; then :meth:`build` on the curated counts
    gives ``vocab_`` and ``merges_`` (they need each canonical value's products, known only after mapping).

    ``value_score(key, value)`` (optional) gives each canonical value its ``judge_score``. Values of
    ``category_key`` must be product types (:mod:`pinlanding.vocab.categories`); values whose precision the
    evidence cannot establish (``evidence``: key coverage, weak sources) get status ``needs_review`` and stay out
    of the curated attributes, hence out of topics, until approved (``held_``: root -> reason).
    """

    min_product_share: float = 0.001
    min_products: int = 3
    max_value_chars: int = 60
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    review: ReviewState = field(default_factory=ReviewState)
    embedder: EmbeddingCache | None = None
    value_score: Callable[[str, str], float | None] | None = None
    category_key: str | None = "category"
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)

    # -- fit ------------------------------------------------------------------------------------------

    def fit(self, counts: RawCounts, n_products: int) -> "VocabCurator":
        if not 0 <= self.min_product_share < 1:
            raise ValueError(f"min_product_share must be in [0, 1), got {self.min_product_share}")
        if n_products <= 0:
            raise ValueError("no products: run the ingest stage first, or check the catalogue")
        self.n_products_ = n_products
        self.threshold_ = max(self.min_products, math.ceil(self.min_product_share * n_products))
        self.steps_: dict[str, Any] = {"threshold": self.threshold_}
        self.dropped_: list[dict[str, Any]] = []
        self.decisions_applied_: list[str] = []
        self._sanitize(counts)
        groups = self._normalize(counts)
        co: dict[str, Counter] = defaultdict(Counter)
        for (key, a, b), n in counts.co.items():
            co[key][(a, b)] = n
        for key in sorted(groups):
            self._filter_and_cluster(key, groups[key], co.get(key, Counter()))
        extras = self._categories(groups, co.get(self.category_key or "", Counter()))
        self._apply_review(groups)
        self.mapping_ = {(k, norm): self._canonical_of(k, norm) for k, gs in groups.items() for norm in gs}
        self.extras_ = self._name_extras(extras)
        self._hold(counts)
        self.dropped_.sort(key=lambda r: (r["key"], r["reason"], -r["product_count"], r["value"]))
        return self

    def _sanitize(self, counts: RawCounts) -> None:
        for (key, value, reason), n in sorted(counts.bad.items(), key=lambda kv: tuple(map(str, kv[0]))):
            self.dropped_.append({"key": key or "(empty)", "value": str(value)[:200], "product_count": n,
                                  "reason": reason, "detail": None})
        by_reason = sorted(counts.by_reason.items(), key=lambda kv: -kv[1])  # stable: ties in first-seen order
        self.steps_["sanitize"] = {"rows_in": counts.rows_in, "rows_dropped": sum(counts.by_reason.values()),
                                   "by_reason": {str(k): int(v) for k, v in by_reason}}

    def _normalize(self, counts: RawCounts) -> dict[str, dict[str, _Group]]:
        groups: dict[str, dict[str, _Group]] = defaultdict(dict)
        for (key, norm), n in sorted(counts.groups.items()):
            groups[key][norm] = _Group(norm, Counter(), n)
        for (key, norm, clean), n in sorted(counts.surfaces.items()):
            groups[key][norm].surfaces[clean] = n
        self.steps_["normalize"] = {"surface_forms": len(counts.surfaces), "groups": len(counts.groups)}
        return groups

    @staticmethod
    def _representative(g: _Group) -> str:
        return min(g.surfaces.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    def _filter_and_cluster(self, key: str, groups: dict[str, _Group], co: Counter) -> None:
        review = self.review
        # rejected values still cluster, so that rejecting a canonical also removes its variants (see _apply_review)
        kept = [g for g in groups.values() if g.count >= self.threshold_ or review.protected(key, g.norm)]
        kept.sort(key=lambda g: (-g.count, g.norm))
        rare = [g for g in groups.values() if g not in kept]
        rare.sort(key=lambda g: (-g.count, g.norm))
        for g in kept:
            g.head = g.norm

        def linked(a: _Group, b: _Group) -> bool:
            pair = (min(a.norm, b.norm), max(a.norm, b.norm))
            return (co.get(pair, 0) >= max(1.0, self.cluster.cannot_link_share * min(a.count, b.count))
                    or review.split(key, a.norm) or review.split(key, b.norm)
                    or lexically_distinct(self._representative(a), self._representative(b)))

        step = self.steps_.setdefault("cluster", {})
        if self.cluster.method != "none" and self.embedder is not None and len(kept) > 1:
            emb = self.embedder.embed([self._representative(g) for g in kept])
            clusterer = ValueClusterer(self.cluster.method, self.cluster.merge_similarity,
                                       self.cluster.hdbscan_min_values, self.cluster.hdbscan_min_cluster_size)
            clusterer.fit(emb, [g.count for g in kept], lambda i, j: not linked(kept[i], kept[j]))
            for i, g in enumerate(kept):
                c = int(clusterer.canonical_[i])
                if c != i:
                    g.head, g.method, g.similarity = kept[c].norm, "cluster", float(clusterer.similarity_[i])
            step[key] = {"method": clusterer.method_, "values": len(kept),
                         "merged": int(sum(clusterer.canonical_ != np.arange(len(kept))))}
        else:
            emb = None
        attachable = rare[: self.cluster.attach_max_values]
        heads = [g for g in kept if g.head == g.norm]
        if self.cluster.attach_rare and self.cluster.method != "none" and self.embedder is not None and attachable and heads:
            head_emb = emb[[kept.index(h) for h in heads]] if emb is not None else \
                self.embedder.embed([self._representative(h) for h in heads])
            best, sims = attach(self.embedder.embed([self._representative(g) for g in attachable]), head_emb,
                                self.cluster.merge_similarity)
            for g, b, s in zip(attachable, best, sims):
                if b >= 0 and not linked(g, heads[b]):
                    g.head, g.method, g.similarity = heads[b].norm, "attach", float(s)
        for g in rare:
            if g.head is None:
                reason = "rejected" if review.rejected(key, g.norm) else "rare"
                detail = (f"on {g.count} products, below the floor of {self.threshold_}" if reason == "rare"
                          else self._who(review.rejected(key, g.norm)))
                self._drop(key, g, reason, detail)

    def _categories(self, groups: dict[str, dict[str, _Group]], co: Counter) -> dict[tuple[str, str], list]:
        """Category values as product types (:mod:`pinlanding.vocab.categories`): merges and drops recorded with
        the rule's name; returns (key, norm) -> the (key, norm) values of other keys its words carry."""
        key = self.category_key
        if not key or key not in groups:
            return {}
        verdicts = self._category_verdicts(key, groups, co)
        self.steps_["categories"] = dict(Counter(v.rule for v in verdicts.values()))
        extras: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for norm, v in verdicts.items():
            target = self._final_target(norm, verdicts)
            if v.action == "merge" and target is None:
                continue  # its target is dropped, or a cycle: keep it as it is
            for g in [g for g in groups[key].values() if g.head == norm]:  # the value and its cluster
                extras[(key, g.norm)] = list(v.extras)
                if v.action == "merge":
                    g.head = target
                    if g.norm == norm:
                        g.method, g.similarity = v.rule, None
                else:
                    g.head = None
                    moved = ", ".join(f"{k}={x}" for k, x in v.extras)
                    self._drop(key, g, v.rule, v.detail + (f"; moved to {moved}" if moved else ""))
        return extras

    def _category_verdicts(self, key: str, groups: dict[str, dict[str, _Group]], co: Counter) -> dict[str, Verdict]:
        """Normalized canonical category -> its verdict (keep verdicts left out); values a reviewer acted on are
        left as they are, so a ``split`` or ``approve`` decision undoes a rule."""
        heads = {g.norm: g for g in groups[key].values() if g.head == g.norm}
        others = {k: {g.norm for g in v.values() if g.head is not None} for k, v in groups.items() if k != key}
        rules = CategoryRules(set(heads), others, self.cluster.fold_plurals)
        free = [g for g in heads.values() if not self.review.protected(key, g.norm)]
        verdicts = {g.norm: v for g in free if (v := rules.judge(self._representative(g))).action != "keep"}
        compounds: dict[str, list[str]] = defaultdict(list)  # head -> compounds ending in it that stay types
        for g in heads.values():
            words = words_of(self._representative(g))
            head = normalize_value(words[-1], self.cluster.fold_plurals) if len(words) > 1 else None
            if head in heads and g.norm not in verdicts and head not in verdicts:
                compounds[head].append(g.norm)
        fragments = head_fragments({n: g.count for n, g in heads.items()}, compounds, dict(co), self.threshold_)
        for head, compound in fragments.items():
            if not self.review.protected(key, head):
                inside = self._representative(heads[compound])
                verdicts[head] = Verdict("drop", "fragment", detail=f"only seen inside '{inside}'")
        return verdicts

    @staticmethod
    def _final_target(norm: str, verdicts: dict[str, Verdict]) -> str | None:
        """Where a merge ends after following merges of its target; None when it ends in a drop or loops."""
        seen = {norm}
        target = verdicts[norm].target
        while target in verdicts:
            if verdicts[target].action != "merge" or target in seen:
                return None
            seen.add(target)
            target = verdicts[target].target
        return target

    def _name_extras(self, extras: dict[tuple[str, str], list]) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(key, norm) -> (key, canonical name) of the other keys' values it carries, where those are kept."""
        out = {}
        for node, values in extras.items():
            named = [(k, name) for k, v in values if (name := self._canonical_of(k, v)) is not None]
            if named:
                out[node] = named
        return out

    def _hold(self, counts: RawCounts) -> None:
        """Status ``needs_review`` (``held_``: root -> reason) for values whose precision the evidence cannot
        establish: their key is stated for too few products, or they come mostly from weak sources."""
        ev = self.evidence
        self.held_: dict[tuple[str, str], str] = {}
        for root, gs in self.members_.items():
            if self.status_.get(root, ("pending",))[0] != "pending":
                continue  # approved or rejected in review: a merchandiser has decided
            key = root[0]
            reasons = []
            coverage = counts.keys.get(key, 0) / self.n_products_
            if coverage < ev.min_key_coverage:
                reasons.append(f"the catalogue states {key} for {coverage:.1%} of its products (< "
                               f"{ev.min_key_coverage:.0%}): too little evidence to establish its precision")
            n = sum(g.count for g in gs)
            weak = 1 - sum(counts.strong.get((key, g.norm), 0) for g in gs) / n if n else 0.0
            if ev.weak_sources and weak >= ev.max_weak_share:
                reasons.append(f"{weak:.0%} of its products have it only from {'/'.join(ev.weak_sources)} "
                               f"(>= {ev.max_weak_share:.0%})")
            if reasons:
                self.held_[root] = "; ".join(reasons)
                self.status_[root] = ("needs_review", None)

    def held_values(self) -> frozenset[tuple[str, str]]:
        """(key, canonical name) of the values held for review."""
        return frozenset((root[0], self.names_[root]) for root in self.held_)

    def _drop(self, key: str, g: _Group, reason: str, detail: str | None) -> None:
        for surface, n in g.surfaces.items():
            self.dropped_.append({"key": key, "value": surface[:200], "product_count": n, "reason": reason,
                                  "detail": detail})

    @staticmethod
    def _who(d: Any) -> str:
        return f"decision {d.id} by {d.who} at {d.at}" if d is not None else ""

    def _apply_review(self, groups: dict[str, dict[str, _Group]]) -> None:
        """Rename/merge (latest decision per value, in time order), then approve/reject on the result."""
        review = self.review
        self.display_: dict[tuple[str, str], str] = {}  # (key, head norm) -> display name override
        parent: dict[tuple[str, str], tuple[str, str]] = {}

        def find(node: tuple[str, str]) -> tuple[str, str]:
            while parent.get(node, node) != node:
                node = parent[node]
            return node

        for key, gs in groups.items():
            for g in gs.values():
                if g.head is not None:
                    parent[(key, g.norm)] = (key, g.head)
        for (key, norm), d in sorted(review.mapping.items(), key=lambda kv: kv[1].at):
            if (key, norm) not in parent:
                continue
            if d.action == "split":  # already a constraint of the clustering
                self.decisions_applied_.append(d.id)
                continue
            target = normalize_value(d.target, self.cluster.fold_plurals)
            src, dst = find((key, norm)), find((key, target)) if (key, target) in parent else (key, target)
            parent.setdefault(dst, dst)
            if src != dst:
                parent[src] = dst
            self.display_[dst] = d.target.strip()
            self.decisions_applied_.append(d.id)
        self.root_: dict[tuple[str, str], tuple[str, str]] = {node: find(node) for node in parent}
        for (key, norm), root in self.root_.items():
            g = groups[key].get(norm)
            if g is not None and root != (key, g.head):  # a decision moved it
                g.method = "review"
        # display names of every root: the override, else the most frequent surface of its members
        members: dict[tuple[str, str], list[_Group]] = defaultdict(list)
        for (key, norm), root in self.root_.items():
            if norm in groups[key]:
                members[root].append(groups[key][norm])
        self.members_ = members
        self.names_: dict[tuple[str, str], str] = {}
        for root, gs in members.items():
            if root in self.display_:
                self.names_[root] = self.display_[root]
            else:
                surfaces: Counter = Counter()
                for g in gs:
                    surfaces.update(g.surfaces)
                self.names_[root] = min(surfaces.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        # reject/approve address what the reviewer saw: a canonical's display name, or a single variant
        by_display = {(root[0], normalize_value(name, self.cluster.fold_plurals)): root for root, name in self.names_.items()}
        self.status_: dict[tuple[str, str], tuple[str, Any]] = {}  # root -> (status, decision)
        self.removed_: set[tuple[str, str]] = set()  # (key, norm) of variants removed by a rejection
        for (key, norm), d in sorted(review.status.items(), key=lambda kv: kv[1].at):
            root = by_display.get((key, norm))
            if root is None and (key, norm) in self.root_ and norm in groups[key]:
                if d.action == "reject":
                    self.removed_.add((key, norm))
                    self._drop(key, groups[key][norm], "rejected", self._who(d))
                    self.decisions_applied_.append(d.id)
                continue
            if root is None:
                continue
            self.status_[root] = ("rejected" if d.action == "reject" else "approved", d)
            self.decisions_applied_.append(d.id)
        for root, (status, d) in self.status_.items():
            if status == "rejected":
                for g in members[root]:
                    if (root[0], g.norm) not in self.removed_:
                        self._drop(root[0], g, "rejected", f"{self.names_[root]} rejected: {self._who(d)}")

    def _canonical_of(self, key: str, norm: str) -> str | None:
        node = (key, norm)
        root = self.root_.get(node)
        if root is None or node in self.removed_ or self.status_.get(root, ("",))[0] == "rejected":
            return None
        return self.names_[root]

    def build(self, curated: CuratedCounts) -> "VocabCurator":
        """Vocabulary rows and merges from the counts of the curated attributes (see :func:`canonicalize`)."""
        counts = curated.stats.per_value
        sources: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for (key, name, src), n in sorted(curated.sources.items()):
            sources[(key, name)][str(src)] = int(n)
        vocab, merges = [], []
        for root, gs in sorted(self.members_.items()):
            key = root[0]
            name = self.names_[root]
            if (key, name) not in counts and (key, name) not in curated.held:
                continue
            live = [g for g in gs if (key, g.norm) not in self.removed_]
            surfaces: Counter = Counter()
            for g in live:
                surfaces.update(g.surfaces)
            variants = [s for s, _ in sorted(surfaces.items(), key=lambda kv: (-kv[1], kv[0])) if s != name]
            n = int(counts.get((key, name)) or curated.held.get((key, name)) or 0)
            for g in live:
                for s, vn in g.surfaces.items():
                    if s != name:
                        merges.append({"key": key, "canonical": name, "variant": s, "variant_count": vn,
                                       "canonical_count": n, "method": g.method, "similarity": g.similarity})
            status, decision = self.status_.get(root, ("pending", None))
            provenance = {"methods": sorted({g.method for g in live}), "sources": sources.get((key, name), {}),
                          "decisions": [decision.id] if decision else []}
            if root in self.held_:
                provenance["review_reason"] = self.held_[root]
            vocab.append({"key": key, "value": name, "variants": variants, "product_count": n, "status": status,
                          "judge_score": self.value_score(key, name) if self.value_score else None,
                          "provenance": json.dumps(provenance, sort_keys=True, ensure_ascii=False)})
        vocab.sort(key=lambda r: (r["key"], -r["product_count"], r["value"]))
        self.vocab_ = vocab
        self.merges_ = sorted(merges, key=lambda r: (r["key"], r["canonical"], -r["variant_count"], r["variant"]))
        return self

    # -- transform -------------------------------------------------------------------------------------

    def transform(self, attributes: pa.Table) -> tuple[pa.Table, CuratedCounts]:
        """Attributes of some products with canonical values (ATTRIBUTES), and their counts for :meth:`build`."""
        return canonicalize(attributes, self.mapping_, self.max_value_chars, self.cluster.fold_plurals, self.extras_,
                            self.held_values())


# --- statistics and report ------------------------------------------------------------------------


def attribute_stats(stats: ValueStats, n_products: int) -> dict[str, Any]:
    """Distinct values per key, mean (key, value) pairs per product, share of values on < 10 products."""
    per_key = Counter(k for k, _ in stats.per_value)
    under = sum(1 for n in stats.per_value.values() if n < RARE_LIMIT)
    return {
        "rows": stats.rows,
        "distinct_values": len(stats.per_value),
        "distinct_values_per_key": {str(k): per_key[k] for k in sorted(per_key)},
        "mean_attributes_per_product": round(stats.rows / n_products, 4) if n_products else 0.0,
        "products_with_attributes": stats.products,
        "share_values_under_10_products": round(under / len(stats.per_value), 4) if stats.per_value else 0.0,
    }


def _report_markdown(report: dict[str, Any]) -> str:
    raw, cur = report["raw"], report["curated"]
    keys = sorted(set(raw["distinct_values_per_key"]) | set(cur["distinct_values_per_key"]))
    lines = [f"# Vocabulary curation report ({report['version']})", "",
             f"{report['n_products']} products; frequency floor {report['threshold']} products per value.", "",
             "| measure | raw extraction | curated |", "| --- | ---: | ---: |",
             f"| distinct values | {raw['distinct_values']} | {cur['distinct_values']} |",
             f"| mean attributes per product | {raw['mean_attributes_per_product']} | {cur['mean_attributes_per_product']} |",
             f"| share of values on < 10 products | {raw['share_values_under_10_products']:.1%} | "
             f"{cur['share_values_under_10_products']:.1%} |",
             f"| products with attributes | {raw['products_with_attributes']} | {cur['products_with_attributes']} |",
             "", "## Distinct values per key", "", "| key | raw | curated |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {raw['distinct_values_per_key'].get(k, 0)} | {cur['distinct_values_per_key'].get(k, 0)} |"
              for k in keys]
    lines += ["", "## Dropped values", "", "| reason | values | product-values |", "| --- | ---: | ---: |"]
    lines += [f"| {r} | {v['values']} | {v['products']} |" for r, v in sorted(report["dropped"].items())]
    lines += ["", f"## Clusters merged: {report['clusters_merged']} "
              f"(merges by method: {json.dumps(report['merges_by_method'], sort_keys=True)})", ""]
    for ex in report["merge_examples"]:
        variants = ", ".join(f"{v['variant']} ({v['count']}, {v['method']})" for v in ex["variants"])
        lines.append(f"- **{ex['key']} = {ex['canonical']}** ({ex['product_count']} products) <- {variants}")
    held = report.get("needs_review", [])
    lines += ["", f"## Values held for review: {len(held)}", "",
              "Out of the curated attributes (so out of topics) until a reviewer approves them.", ""]
    lines += [f"- **{h['key']} = {h['value']}** ({h['product_count']} products): {h['reason']}" for h in held]
    lines += ["", f"Review decisions read: {report['review']['decisions']}, applied: {report['review']['applied']}, "
              f"unreadable lines skipped: {report['review']['skipped']}.", ""]
    return "\n".join(lines)


def build_report(curator: VocabCurator, raw: ValueStats, curated: ValueStats, version: str) -> dict[str, Any]:
    n = curator.n_products_
    dropped: dict[str, dict[str, int]] = defaultdict(lambda: {"values": 0, "products": 0})
    for d in curator.dropped_:
        dropped[d["reason"]]["values"] += 1
        dropped[d["reason"]]["products"] += d["product_count"]
    by_canonical: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for m in curator.merges_:
        by_canonical[(m["key"], m["canonical"])].append(m)
    counts = {(v["key"], v["value"]): v["product_count"] for v in curator.vocab_}
    examples = sorted(by_canonical.items(), key=lambda kv: -counts.get(kv[0], 0))
    # show the largest clusters, but at most 3 per key so every key gets a look
    shown, per_key = [], Counter()
    for (key, canonical), ms in examples:
        if per_key[key] >= 3 or len(shown) >= 25:
            continue
        per_key[key] += 1
        shown.append({"key": key, "canonical": canonical, "product_count": counts.get((key, canonical), 0),
                      "variants": [{"variant": m["variant"], "count": m["variant_count"], "method": m["method"]}
                                   for m in ms[:8]]})
    return {
        "version": version,
        "n_products": n,
        "threshold": curator.threshold_,
        "raw": attribute_stats(raw, n),
        "curated": attribute_stats(curated, n),
        "steps": curator.steps_,
        "dropped": dict(dropped),
        "clusters_merged": len(by_canonical),
        "merges_by_method": dict(Counter(m["method"] for m in curator.merges_)),
        "merge_examples": shown,
        "needs_review": [{"key": v["key"], "value": v["value"], "product_count": v["product_count"],
                          "reason": json.loads(v["provenance"]).get("review_reason", "")}
                         for v in curator.vocab_ if v["status"] == "needs_review"],
        "review": {"decisions": curator.review.count, "skipped": curator.review.skipped,
                   "applied": len(set(curator.decisions_applied_))},
    }


# --- versions -------------------------------------------------------------------------------------


def _vocab_index(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["key"], r["value"]): r for r in rows}


def diff_vocabularies(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, Any]:
    """Values added/removed, and per-value changes of status, variants and product count."""
    a, b = _vocab_index(old), _vocab_index(new)
    brief = lambda r: {"key": r["key"], "value": r["value"], "product_count": r["product_count"]}  # noqa: E731
    changed = []
    for k in sorted(a.keys() & b.keys()):
        ra, rb = a[k], b[k]
        delta = {f: [ra[f], rb[f]] for f in ("status", "product_count") if ra[f] != rb[f]}
        if set(ra["variants"]) != set(rb["variants"]):
            delta["variants_added"] = sorted(set(rb["variants"]) - set(ra["variants"]))
            delta["variants_removed"] = sorted(set(ra["variants"]) - set(rb["variants"]))
        if delta:
            changed.append({"key": k[0], "value": k[1], **delta})
    removed = [brief(a[k]) for k in sorted(a.keys() - b.keys())]
    added = [brief(b[k]) for k in sorted(b.keys() - a.keys())]
    # a removed value whose spelling now lives in an added value's variants was renamed or merged
    renamed = []
    for r in removed:
        for k in sorted(b.keys() - a.keys()):
            if k[0] == r["key"] and r["value"] in b[k]["variants"]:
                renamed.append({"key": r["key"], "from": r["value"], "to": k[1]})
    return {"added": added, "removed": removed, "renamed": renamed, "changed": changed,
            "summary": {"added": len(added), "removed": len(removed), "renamed": len(renamed), "changed": len(changed)}}


def write_version(folder: AnyPath, rows: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Store ``rows`` as the next ``versions/vNNNN.json`` unless identical to the latest; write ``diff.json``."""
    versions = folder / "versions"
    existing = list_files(versions, "v[0-9][0-9][0-9][0-9].json")
    digest = json_digest(rows)
    latest = read_json(existing[-1]) if existing else None
    if latest is not None and latest.get("digest") == digest:
        name = existing[-1].stem
        diff = read_json(folder / "diff.json", default=None)
        if diff is None:
            prev = read_json(existing[-2])["vocabulary"] if len(existing) > 1 else []
            diff = {"from": existing[-2].stem if len(existing) > 1 else None, "to": name,
                    **diff_vocabularies(prev, rows)}
            write_json(folder / "diff.json", diff)
        return name, diff
    name = f"v{len(existing) + 1:04d}"
    write_json(versions / f"{name}.json", {"version": name, "digest": digest, **meta, "vocabulary": rows})
    diff = {"from": existing[-1].stem if existing else None, "to": name,
            **diff_vocabularies(latest["vocabulary"] if latest else [], rows)}
    write_json(folder / "diff.json", diff)
    return name, diff


# --- stage ----------------------------------------------------------------------------------------


def _value_scorer(cfg: VocabConfig) -> Callable[[str, str], float | None] | None:
    """Value judge scores: share of shopper queries naming the value, log-scaled to [0, 1] (1 = 100+ queries)."""
    from pinlanding.collections.layout import resolve_data_path
    from pinlanding.vocab.judge import QueryIndex

    try:
        index = QueryIndex.from_tsv(resolve_data_path(cfg.judge.queries), cfg.judge.query_column)
    except (FileNotFoundError, ValueError):
        return None
    return lambda key, value: round(min(1.0, math.log1p(index.mentions(value)) / math.log1p(100)), 4)


def _count_part(attributes: AnyPath, max_value_chars: int, fold_plurals: bool, weak_sources: tuple[str, ...],
                name: str) -> RawCounts:
    return count_raw(read_part(attributes, name, ATTRIBUTES), max_value_chars, fold_plurals, weak_sources)


def _curate_part(attributes: AnyPath, out: AnyPath, curator: "VocabCurator", name: str) -> tuple[Part, CuratedCounts]:
    table, counts = curator.transform(read_part(attributes, name, ATTRIBUTES))
    return write_part(out, name, table, ATTRIBUTES), counts


class _Transform:
    """What the curate tasks need of a fitted curator (its mapping, extras and held values; no embedder)."""

    def __init__(self, curator: "VocabCurator") -> None:
        self.mapping_, self.extras_, self.held = curator.mapping_, curator.extras_, curator.held_values()
        self.max_value_chars, self.fold_plurals = curator.max_value_chars, curator.cluster.fold_plurals

    def transform(self, attributes: pa.Table) -> tuple[pa.Table, CuratedCounts]:
        return canonicalize(attributes, self.mapping_, self.max_value_chars, self.fold_plurals, self.extras_, self.held)


def catalog_parts(layout: RunLayout, per_product: AnyPath) -> list[str]:
    """The catalogue's part names, checking that ``per_product`` (co-partitioned with it) has no other part."""
    names = part_names(layout.products)
    stray = sorted(set(part_names(per_product)) - set(names))
    if stray:
        raise ValueError(f"{per_product} has parts {stray} that catalog/products.parquet lacks (parts: {names}); "
                         "rerun the stage that writes it")
    return names


def curate(cfg: VocabConfig, layout: RunLayout,
           ray_cfg: RayConfig | None = None) -> tuple[VocabCurator, ValueStats, ValueStats]:
    """Fit the curator on the run's raw attributes (counted part by part), write the curated attributes part by
    part; return the curator and the raw and curated statistics."""
    names = catalog_parts(layout, layout.attributes)
    fold = cfg.cluster.fold_plurals
    weak = tuple(cfg.evidence.weak_sources)
    raw = merge_counts(map_parts(partial(_count_part, layout.attributes, cfg.max_value_chars, fold, weak), names,
                                 ray_cfg, desc="vocab: count"), RawCounts())
    review = load_review_state(decisions_path(layout, cfg.decisions_path), fold)
    embedder = EmbeddingCache(cfg.cluster.model, layout.dir("vocabulary") / ".embedding_cache.parquet",
                              cfg.cluster.batch_size)
    curator = VocabCurator(cfg.min_product_share, cfg.min_products, cfg.max_value_chars, cfg.cluster, review,
                           embedder, _value_scorer(cfg), cfg.category_key, cfg.evidence).fit(raw, count_rows(layout.products))
    embedder.save()
    out = as_path(layout.curated_attributes)
    written = map_parts(partial(_curate_part, layout.attributes, out, _Transform(curator)), names, ray_cfg,
                        desc="vocab: curate")
    commit_parts(out, [part for part, _ in written], ATTRIBUTES)
    curated = merge_counts((counts for _, counts in written), CuratedCounts())
    return curator.build(curated), raw.stats, curated.stats


def run_vocab(ctx: Any) -> dict[str, Any]:
    """Stage entry point: writes vocabulary/{vocabulary,attributes,merges,dropped}.parquet, versions, report."""
    cfg: VocabConfig = ctx.cfg.vocab
    layout: RunLayout = ctx.layout
    curator, raw, curated = curate(cfg, layout, ctx.cfg.ray)
    folder = layout.dir("vocabulary")
    vocab = pa.Table.from_pylist(curator.vocab_, schema=VOCAB)
    write_table(vocab, layout.vocabulary, VOCAB)
    write_table(pa.Table.from_pylist(curator.merges_, schema=VOCAB_MERGES), folder / "merges.parquet", VOCAB_MERGES)
    write_table(pa.Table.from_pylist(curator.dropped_, schema=VOCAB_DROPPED), folder / "dropped.parquet", VOCAB_DROPPED)
    meta = {"created_at": datetime.now(timezone.utc).isoformat(), "config": cfg.model_dump(mode="json"),
            "decisions_applied": sorted(set(curator.decisions_applied_))}
    version, diff = write_version(folder, curator.vocab_, meta)
    report = build_report(curator, raw, curated, version)
    report["diff"] = diff["summary"]
    write_json(folder / "report.json", report)
    write_text(folder / "report.md", _report_markdown(report))
    return {"version": version, "values": vocab.num_rows, "raw_distinct": report["raw"]["distinct_values"],
            "merged_clusters": report["clusters_merged"], "dropped": len(curator.dropped_),
            "curated_rows": curated.rows, "decisions_applied": report["review"]["applied"]}
