"""Query -> collection: parse first, embed only the words the parse leaves unexplained, calibrated confidence.

1. **Parse** the query with the report's intent parser (:class:`pinlanding.evaluation.intent.Lexicon`: the
   general fashion lexicon, then the run's vocabulary) into ``(family, canonical value)`` attributes, and
   split it into clauses at ``with``, ``and``, ``on``, commas...: the first product noun is the product; a
   clause naming another noun is another item ("... with black jeans"), a colour after ``with`` a detail's
   ("... with white collar"); both are reported, never matched. Who it is for ("for ladies") counts for the
   product wherever it is said. A noun directly before a noun modifies it ("jean shirt" is a denim shirt,
   "blazer dress" a dress).
2. **Embed the leftovers**: content words the parse left unexplained (not stop words, numbers, or words
   that only name a family such as "colour") are compared with the embedded vocabulary values that the
   published collections carry; a value at or above ``embed_threshold`` (``embed_category_threshold`` for
   a product type) explains the word, for a family the parse left empty. With ``embed_scope``
   ``unnamed_product`` (the default) only queries that name no known product type are embedded; ``all``
   also embeds beside a named one, when some candidate collection has a family the parse left empty.
3. **Choose** among the collections of the product's type (or a broader one: ``shoe`` for ``sneaker``)
   whose every attribute the query asks for, exactly or as a broader value (a ``blue`` collection for
   ``navy blue``): the highest weighted coverage (:data:`KEY_WEIGHTS`), ties to the larger feed.
   Candidates are looked up by subsets of the query's attributes, never by a scan. ``exact`` when the
   collection's attributes are exactly the query's, otherwise ``partial`` with the unmet attributes
   listed; ``none`` when no collection qualifies or the confidence is below ``none_below``.
4. **Confidence** is a logistic model of the choice's features (:data:`FEATURES`), fitted on the dev split
   of the labelled sample ``evaluation/data/query_labels.tsv`` (``benchmarks/eval_query_mapping.py --fit``
   writes ``feeds/calibration.json``): the probability that the collection is a right landing page or an
   honest partial one.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from pinlanding.evaluation.intent import Lexicon
from pinlanding.evaluation.mapping import accepts, attr_key, normalize

Attr = tuple[str, str]
CALIBRATION_PATH = Path(__file__).resolve().parent / "calibration.json"

# how much each family counts toward coverage: the product type dominates, then what shoppers name most
KEY_WEIGHTS = {"category": 3.0, "colour": 1.0, "brand": 1.0, "material": 0.8, "pattern": 0.8, "occasion": 0.7,
               "gender": 0.6, "neck": 0.6, "fit": 0.6, "sleeve": 0.6, "length": 0.6}
OTHER_WEIGHT = 0.5
BROADER_FAMILIES = ("category", "colour", "material", "pattern")  # a broader collection value still serves
BROADER_CREDIT = 0.5
# words that name a family but no value: explained, never embedded
FAMILY_WORDS = frozenset({"color", "colour", "colored", "coloured", "shade", "tone", "fabric", "material", "pattern",
                          "style", "design", "designed", "wear", "size", "type", "kind", "item", "sleeve", "sleeved",
                          "neck", "neckline", "fit", "fitting", "length"})
# unnamed_product: embed the leftover words of queries whose parse found no product type (the embedding can
# then name the product); all: also fill attribute families the parse left open beside a named product
EMBED_SCOPES = ("unnamed_product", "all")
FEATURES = ("coverage", "unmet", "unexplained", "broader", "embedded_category", "other_items")


def weight(family: str) -> float:
    return KEY_WEIGHTS.get(family, OTHER_WEIGHT)


@dataclass
class Calibration:
    """Logistic confidence: ``sigmoid(intercept + sum(coef[f] * feature f))``; ``none_below`` answers none."""

    intercept: float = 0.0
    coef: dict[str, float] = field(default_factory=lambda: {"coverage": 4.0, "unmet": -0.3, "unexplained": -0.3})
    none_below: float = 0.3
    source: str = "uncalibrated defaults"

    def __call__(self, features: dict[str, float]) -> float:
        z = self.intercept + sum(self.coef.get(k, 0.0) * v for k, v in features.items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    @classmethod
    def load(cls, path: Path = CALIBRATION_PATH) -> "Calibration":
        if not path.exists():
            return cls()
        d = json.loads(path.read_text())
        return cls(intercept=float(d["intercept"]), coef={k: float(v) for k, v in d["coef"].items()},
                   none_below=float(d["none_below"]), source=str(d.get("source", path.name)))


@dataclass
class Candidate:
    index: int  # into the matcher's feeds
    score: float
    kind: str  # exact | partial
    matched: list[dict[str, Any]]
    unmet: list[Attr]
    features: dict[str, float]
    confidence: float = 0.0


@dataclass
class Parsed:
    attrs: list[Attr]  # the product's, in query order; embedded ones appended
    categories: list[str]  # the product type ([] when the query names none)
    unexplained: list[str]
    embedded: dict[str, dict[str, Any]]  # word -> {key, value, similarity}
    other_items: bool
    secondary: list[Attr]  # other items' and details' attributes: reported, not matched
    other_words: list[str]


@dataclass
class Result:
    query: str
    match: str  # exact | partial | none
    confidence: float
    best: Candidate | None
    candidates: list[Candidate]
    parsed: Parsed
    pending: list[str] = field(default_factory=list)  # words not embedded yet: the answer may change once they are


class QueryMatcher:
    """Maps free-text queries to published collections (see the module docstring)."""

    def __init__(self, feeds: Sequence[dict[str, Any]], vocabulary: Iterable[dict[str, Any]] = (),
                 embeddings: Any | None = None, calibration: Calibration | None = None,
                 embed_threshold: float = 0.85, embed_category_threshold: float = 0.9, max_embedded_words: int = 8,
                 embed_scope: str = "unnamed_product"):
        if embed_scope not in EMBED_SCOPES:
            raise ValueError(f"embed_scope must be one of {EMBED_SCOPES}, got {embed_scope!r}")
        self.embed_scope = embed_scope
        self.feeds = feeds
        self.lexicon = Lexicon.build(vocabulary)
        self.calibration = calibration or Calibration.load()
        self.embeddings = embeddings  # an EmbeddingCache, or None: parse only
        self.embed_threshold = embed_threshold
        self.embed_category_threshold = embed_category_threshold
        self.max_embedded_words = max_embedded_words
        self.attrs: list[frozenset[Attr]] = []
        self.by_category: dict[str, list[int]] = {}
        present: set[Attr] = set()
        self.raw: list[dict[Attr, str]] = []  # canonical attribute -> the collection's own spelling
        for i, f in enumerate(feeds):
            raw = {attr_key(a["key"], a["value"]): a["value"] for a in f.get("attributes") or [] if a and a.get("key")}
            attrs = frozenset(raw)
            self.raw.append(raw)
            self.attrs.append(attrs)
            present |= attrs
            for fam, v in attrs:
                if fam == "category":
                    self.by_category.setdefault(v, []).append(i)
        self.families_of_category = {c: {fam for i in idx for fam, _ in self.attrs[i]} for c, idx in self.by_category.items()}
        # attribute set -> collections: candidates are found by looking up subsets of the query, never by a scan
        self.by_attrs: dict[frozenset[Attr], list[int]] = {}
        for i, attrs in enumerate(self.attrs):
            self.by_attrs.setdefault(attrs, []).append(i)
        self.max_attrs = max((len(a) for a in self.attrs), default=0)
        self.sorted_attrs = [tuple(sorted(a)) for a in self.attrs]
        self.values: dict[str, set[str]] = {}
        for fam, v in present:
            self.values.setdefault(fam, set()).add(v)
        # embedding targets: lexicon phrases whose attribute some collection carries (brands are names, not meanings)
        self.targets: list[tuple[str, Attr]] = sorted(
            {(" ".join(words), attr) for words, attr in self.lexicon.phrases.items() if attr in present and attr[0] != "brand"})
        self.target_vectors: np.ndarray | None = None
        self.target_families = np.array([a[0] for _, a in self.targets]) if self.targets else np.array([], dtype=str)

    # -- start-up -------------------------------------------------------------------------------------------
    def warm(self) -> None:
        """Embed every target phrase (in batches) so that a query only ever embeds its own leftover words."""
        if self.embeddings is not None:
            self.target_vectors = self.embeddings.pin([t for t, _ in self.targets])

    @property
    def ready(self) -> bool:
        return self.embeddings is None or self.target_vectors is not None

    # -- parsing --------------------------------------------------------------------------------------------
    def parse(self, query: str) -> "Parse":
        """The product the query asks for and its attributes (see :class:`Parse`)."""
        words = normalize(query).split()
        spans, _ = self.lexicon.spans(query)
        clause = _clauses(query, words)  # word index -> (clause number, its connector)
        # a product noun directly followed by another is a modifier ("jean shirt", "short skirt", "blazer dress")
        kept: list[tuple[int, int, Attr]] = []
        extra: list[tuple[int, int, Attr]] = []
        for n, (start, end, attr) in enumerate(spans):
            nxt = spans[n + 1] if n + 1 < len(spans) else None
            if attr[0] == "category" and nxt and nxt[0] == end and nxt[2][0] == "category" and nxt[2] != attr:
                if attr[1] == "jean":
                    extra.append((start, end, ("material", "denim")))
                continue
            kept.append((start, end, attr))
        kept = sorted(kept + extra)
        nouns = [(s, a[1]) for s, _, a in kept if a[0] == "category"]
        product_at = nouns[0][0] if nouns else None
        if product_at is not None:
            c, conn = clause[product_at]
            # "<attributes> outfit with strap sandals": the product comes before the connector, unnamed
            if conn in UNNAMED_CONNECTORS and any(a[0] != "gender" and clause[s][0] < c for s, _, a in kept):
                product_at = None
        primary: dict[Attr, None] = {}
        secondary: dict[Attr, None] = {}
        product_clause = clause[product_at][0] if product_at is not None else None
        other_item = {clause[s][0] for s, a in nouns if product_at is None or clause[s][0] != product_clause}
        for start, _, attr in kept:
            c, conn = clause[start]
            after = product_at is not None and start > product_at
            if attr[0] == "gender":
                primary.setdefault(attr)  # who shops, whichever item it is said beside
            elif product_at is None:
                (primary if attr[0] != "category" else secondary).setdefault(attr)
            elif c in other_item:
                secondary.setdefault(attr)  # another item ("... with black jeans")
            elif attr[0] == "category" and attr[1] != nouns[0][1] and start != product_at:
                secondary.setdefault(attr)
            elif after and c != product_clause and conn in DETAIL_CONNECTORS and attr[0] == "colour":
                secondary.setdefault(attr)  # a detail's colour ("... with black collar")
            else:
                primary.setdefault(attr)
        covered = {i for s, e, _ in spans for i in range(s, e)}
        leftover = [(i, w) for i, w in enumerate(words)
                    if i not in covered and w not in ENGLISH_STOP_WORDS and not w.isdigit() and w not in FAMILY_WORDS]
        mine = [w for i, w in leftover if product_at is None or clause[i][0] not in other_item
                or clause[i][0] == product_clause]
        others = [w for i, w in leftover if w not in mine]
        cats = [nouns[0][1]] if product_at is not None else []
        return Parse(list(primary), [a for a in secondary if a not in primary], cats, mine, others)

    def _embed_words(self, parsed: list["Parse"]) -> list[list[str]]:
        """Per parsed query, the leftover words worth embedding (they could change the answer)."""
        out = []
        for p in parsed:
            if (self.target_vectors is None or not p.words or (self.embed_scope == "unnamed_product" and p.categories)
                    or not self._open_families(p.attrs, p.categories)):
                out.append([])
                continue
            out.append(list(dict.fromkeys(w for w in p.words if w.isalpha() and len(w) >= 3))[:self.max_embedded_words])
        return out

    def _open_families(self, attrs: list[Attr], cats: list[str]) -> set[str]:
        """Families an embedded word could fill that would change the candidates."""
        have = {f for f, _ in attrs}
        if not cats:
            return set(self.target_families.tolist()) - (have - {"category"})
        fams: set[str] = set()
        for c in cats:
            for fc in self._serving("category", c):
                fams |= self.families_of_category.get(fc, set())
        return fams - have

    def _explain(self, words: list[str], attrs: list[Attr], cats: list[str]) -> dict[str, dict[str, Any]]:
        """word -> the attribute it is embedded onto (best similarity per family, families the parse left open)."""
        if not words or self.target_vectors is None or self.embeddings is None:
            return {}
        open_fams = self._open_families(attrs, cats)
        mask = np.isin(self.target_families, sorted(open_fams))
        if not mask.any():
            return {}
        idx = np.flatnonzero(mask)
        sims = self.embeddings.get(words) @ self.target_vectors[idx].T
        best: dict[str, tuple[float, str, Attr]] = {}
        for r, w in enumerate(words):
            j = int(sims[r].argmax())
            s = float(sims[r, j])
            attr = self.targets[idx[j]][1]
            limit = self.embed_category_threshold if attr[0] == "category" else self.embed_threshold
            if s >= limit and (attr[0] not in best or s > best[attr[0]][0]):
                best[attr[0]] = (s, w, attr)
        return {w: {"key": a[0], "value": a[1], "similarity": round(s, 4)} for s, w, a in best.values()}

    # -- choosing -------------------------------------------------------------------------------------------
    @lru_cache(maxsize=65536)  # noqa: B019
    def _serving(self, fam: str, value: str) -> tuple[str, ...]:
        """Collection values of ``fam`` that serve a query's ``value``: itself, or broader ones."""
        values = self.values.get(fam, set())
        out = [value] if value in values else []
        if fam in BROADER_FAMILIES:
            out += sorted(v for v in values if v != value and accepts(fam, v, value))
        return tuple(out)

    def candidates(self, attrs: list[Attr], cats: list[str], embedded: dict[str, dict[str, Any]],
                   unexplained: int, several: bool) -> list[Candidate]:
        by_family: dict[str, set[str]] = {}
        for fam, v in attrs:
            by_family.setdefault(fam, set()).add(v)
        source = {(e["key"], e["value"]): "embedding" for e in embedded.values()}
        total = sum(weight(f) for f, _ in attrs) or 1.0
        # every collection value that could serve one of the query's (non-product-type) attributes
        options = sorted({(fam, v) for fam, u in attrs if fam != "category" for v in self._serving(fam, u)})
        found: dict[int, None] = {}
        for qc in cats:
            for fc in self._serving("category", qc):
                base = ("category", fc)
                for r in range(0, self.max_attrs):
                    for combo in combinations(options, r):
                        if len({fam for fam, _ in combo}) < r:
                            continue  # a collection has one value per key
                        for i in self.by_attrs.get(frozenset((base, *combo)), ()):
                            found.setdefault(i)
        out = []
        for i in found:
            cand = self._check(i, attrs, by_family, source, total, unexplained, several)
            if cand is not None:
                out.append(cand)
        out.sort(key=lambda c: (-c.score, -(self.feeds[c.index].get("size") or 0),
                                -(self.feeds[c.index].get("judge_score") or 0.0), self.feeds[c.index]["slug"]))
        return out

    def _check(self, i: int, attrs: list[Attr], by_family: dict[str, set[str]], source: dict[Attr, str], total: float,
               unexplained: int, several: bool) -> Candidate | None:
        """The collection as a candidate, or None when it narrows on something the query did not ask for."""
        matched, covered = [], set()
        score, broader, embedded_category = 0.0, 0, 0.0
        for fam, v in self.sorted_attrs[i]:
            asked = by_family.get(fam, set())
            if v in asked:
                how, q = source.get((fam, v), "exact"), v
                score += weight(fam)
            else:
                q = next((u for u in sorted(asked) if fam in BROADER_FAMILIES and accepts(fam, v, u)), None)
                if q is None:
                    return None  # the collection narrows on something the query did not ask for
                how = "broader"
                broader += 1
                score += weight(fam) * BROADER_CREDIT
            covered.add((fam, q))
            if fam == "category" and source.get((fam, q)) == "embedding":
                embedded_category = 1.0
            matched.append({"key": fam, "value": q, "collection_value": self.raw[i][(fam, v)], "via": how})
        unmet = [a for a in attrs if a not in covered]
        kind = "exact" if not unmet and not broader else "partial"
        features = {"coverage": score / total, "unmet": float(len(unmet)), "unexplained": float(unexplained),
                    "broader": float(broader), "embedded_category": embedded_category,
                    "other_items": 1.0 if several else 0.0}
        return Candidate(i, score, kind, matched, unmet, features)

    # -- public ---------------------------------------------------------------------------------------------
    def match(self, query: str, k: int = 1) -> Result:
        return self.match_many([query], k)[0]

    def match_many(self, queries: Sequence[str], k: int = 1) -> list[Result]:
        """Map many queries: their unexplained words are embedded together, each distinct word once."""
        plan = self.plan(queries)
        self.embed(self.missing(plan))  # one batched encoder call for every word not cached yet
        return self.complete(plan, k)

    def plan(self, queries: Sequence[str]) -> "Plan":
        """Parse the queries and pick the words to embed (cheap: no encoder call)."""
        parsed = [self.parse(q) for q in queries]
        return Plan(list(queries), parsed, self._embed_words(parsed))

    def missing(self, plan: "Plan") -> list[str]:
        """The plan's words whose vectors are not cached yet (what :meth:`embed` would encode)."""
        if self.embeddings is None:
            return []
        return self.embeddings.missing(sorted({w for ws in plan.words for w in ws}))

    def embed(self, words: list[str]) -> None:
        if words and self.embeddings is not None:
            self.embeddings.get(words)

    def complete(self, plan: "Plan", k: int = 1, cached_only: bool = False) -> list[Result]:
        """Finish the plan's queries. ``cached_only``: use only the words already embedded (never calls the encoder;
        the others are left unexplained and listed in ``Result.pending``)."""
        out = []
        for q, p, words in zip(plan.queries, plan.parsed, plan.words):
            pending = self.embeddings.missing(words) if cached_only and self.embeddings is not None else []
            res = self._finish(q, p, [w for w in words if w not in pending], k)
            res.pending = pending
            out.append(res)
        return out

    def _finish(self, query: str, p: "Parse", embed: list[str], k: int = 1) -> Result:
        embedded = self._explain(embed, p.attrs, p.categories)
        attrs, cats = list(p.attrs), list(p.categories)
        for e in embedded.values():
            attrs.append((e["key"], e["value"]))
            if e["key"] == "category" and not cats:
                cats = [e["value"]]
        unexplained = [w for w in p.words if w not in embedded]
        several = bool(p.secondary)
        info = Parsed(attrs, cats, unexplained, embedded, several, p.secondary, p.other_words)
        cands = self.candidates(attrs, cats, embedded, len(unexplained), several)[:max(1, k)]
        for c in cands:
            c.confidence = self.calibration(c.features)
        best = cands[0] if cands else None
        if best is None or best.confidence < self.calibration.none_below:
            return Result(query, "none", best.confidence if best else 0.0, None, cands, info)
        return Result(query, best.kind, best.confidence, best, cands, info)


@dataclass
class Plan:
    queries: list[str]
    parsed: list["Parse"]
    words: list[list[str]]  # per query, the leftover words to embed


@dataclass
class Parse:
    """A parsed query: the product's attributes (gender always counts), those of other items or details
    (``... with black jeans``, ``... with white collar``), the product type (none when unnamed), and the
    leftover content words (the product's, the other items')."""

    attrs: list[Attr]
    secondary: list[Attr]
    categories: list[str]
    words: list[str]
    other_words: list[str]


ITEM_CONNECTORS = frozenset({"with", "and", "on", "over", "under", "plus", "paired", "worn", ","})
DETAIL_CONNECTORS = frozenset({"with", "on", "over", "under"})
UNNAMED_CONNECTORS = frozenset({"with", "on", "over", "under", "paired", "worn"})


def _clauses(query: str, words: list[str]) -> list[tuple[int, str]]:
    """Per normalised word: (clause number, the connector that opened it). Clauses open at a connector word
    or a comma; the words line up with :func:`normalize`'s because each comma-separated piece is normalised
    the same way."""
    out: list[tuple[int, str]] = []
    n, conn = 0, ""
    for k, piece in enumerate(re.split(r"[,;]", query)):
        if k:
            n, conn = n + 1, ","
        for w in normalize(piece).split():
            if w in ITEM_CONNECTORS:  # "with X and Y": the "and" goes on with the details
                n, conn = n + 1, conn if w == "and" and conn in DETAIL_CONNECTORS else w
            out.append((n, conn))
    if len(out) != len(words):  # never expected; fall back to one clause
        return [(0, "")] * len(words)
    return out

