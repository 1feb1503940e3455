"""The vocabulary curator: merged raw counts -> canonical values, merges, drops and review statuses.

Recipe (:meth:`VocabCurator.fit`), one private method per step, each counted in ``steps_``: sanitize (drop
unusable values with a reason) -> exact normalization -> frequency filter -> embedding clustering of the
kept values -> attachment of rare variants -> category rules -> review decisions (split is a constraint on
clustering; rename/merge/approve/reject apply to the result) -> values held for review. Every merge is a
row of ``merges_``, every drop a row of ``dropped_``.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from pinlanding.vocab.categories import CategoryRules, Verdict, head_fragments, words_of
from pinlanding.vocab.clustering import EmbeddingCache, ValueClusterer, attach, lexically_distinct, normalize_value
from pinlanding.vocab.config import ClusterConfig, EvidenceConfig
from pinlanding.vocab.counts import CuratedCounts, RawCounts, canonicalize
from pinlanding.vocab.decisions import ReviewState


@dataclass
class _Group:
    """Values of one key that share a normalized form."""

    norm: str
    surfaces: Counter  # clean surface form -> products
    count: int  # products carrying any of the surfaces
    head: str | None = None  # normalized form of its canonical group (None: dropped)
    method: str = "normalize"
    similarity: float | None = None


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
