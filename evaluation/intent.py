"""Search-intent analysis of a query log: which attributes shoppers ask for, and what the feeds cover.

Queries are parsed into ``(family, canonical value)`` attributes by longest phrase match against a
lexicon: first the general fashion lexicon of :data:`pinlanding.evaluation.mapping.SYNONYMS`, then
the run's own vocabulary (its values and variants, so brands and shop-specific terms are found).
A query's *intent* is its set of attributes. Label-free: the report stage runs this.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from pinlanding.evaluation.mapping import SYNONYMS, attr_key, canonical, normalize

Attr = tuple[str, str]
Intent = frozenset[Attr]
MAX_PHRASE_WORDS = 5


@dataclass
class Lexicon:
    """Normalised phrase -> attribute, matched longest-first."""

    phrases: dict[tuple[str, ...], Attr] = field(default_factory=dict)

    def add(self, phrase: str, attr: Attr) -> None:
        words = tuple(normalize(phrase).split())
        if words and len(words) <= MAX_PHRASE_WORDS:
            self.phrases.setdefault(words, attr)  # the first source to claim a phrase keeps it

    @classmethod
    def build(cls, vocabulary: Iterable[dict[str, Any]] = ()) -> "Lexicon":
        """The general lexicon plus the vocabulary rows (``key``, ``value``, ``variants``) not rejected."""
        lex = cls()
        for family, table in SYNONYMS.items():
            for phrase in table:
                lex.add(phrase, (family, canonical(family, phrase)))
        for row in vocabulary:
            if row.get("status") == "rejected" or not row.get("key") or not row.get("value"):
                continue
            attr = attr_key(row["key"], row["value"])
            for phrase in [row["value"], *(row.get("variants") or [])]:
                lex.add(str(phrase), attr)
        return lex

    def parse(self, query: str) -> tuple[Intent, list[str]]:
        """The attributes of ``query`` and its leftover (unrecognised, non-stop-word) words."""
        spans, rest = self.spans(query)
        return frozenset(attr for _, _, attr in spans), rest

    def spans(self, query: str) -> tuple[list[tuple[int, int, Attr]], list[str]]:
        """:meth:`parse` with positions: ``(first word, end word, attribute)`` of every phrase found, in query
        order (over the normalised words), and the leftover words."""
        words = normalize(query).split()
        spans: list[tuple[int, int, Attr]] = []
        rest: list[str] = []
        i = 0
        while i < len(words):
            for n in range(min(MAX_PHRASE_WORDS, len(words) - i), 0, -1):
                attr = self.phrases.get(tuple(words[i:i + n]))
                if attr:
                    spans.append((i, i + n, attr))
                    i += n
                    break
            else:
                if words[i] not in ENGLISH_STOP_WORDS and not words[i].isdigit():
                    rest.append(words[i])
                i += 1
        return spans, rest


def intent_label(intent: Intent) -> str:
    """A stable readable form: ``category=dress; colour=red``."""
    return "; ".join(f"{k}={v}" for k, v in sorted(intent))


@dataclass
class Coverage:
    """Feeds indexed by their attribute sets, to find the best feed for an intent."""

    feeds: dict[Intent, tuple[str, int]]  # attribute set -> (slug, size) of its largest feed

    @classmethod
    def build(cls, feeds: Iterable[tuple[str, Sequence[Attr], int]]) -> "Coverage":
        index: dict[Intent, tuple[str, int]] = {}
        for slug, attrs, size in feeds:
            key = frozenset(attrs)
            if key and (key not in index or size > index[key][1]):
                index[key] = (slug, int(size))
        return cls(index)

    def best(self, intent: Intent, max_attrs: int = 8) -> tuple[Intent, str, int] | None:
        """The feed whose attributes are the largest subset of ``intent`` (ties: the larger feed)."""
        attrs = sorted(intent)[:max_attrs]
        for n in range(len(attrs), 0, -1):
            found = [(frozenset(c), *self.feeds[frozenset(c)]) for c in combinations(attrs, n)
                     if frozenset(c) in self.feeds]
            if found:
                return max(found, key=lambda f: (f[2], f[1]))
        return None


def analyze(queries: Sequence[str], lexicon: Lexicon, coverage: Coverage, head_share: float = 0.5,
            thin_size: int = 20, top: int = 50) -> dict[str, Any]:
    """Demand and coverage of a query log: summary, per-key table, top intents, uncovered queries."""
    if not 0 < head_share < 1:
        raise ValueError(f"head_share must be in (0, 1), got {head_share}")
    rows: list[dict[str, Any]] = []
    intents: Counter = Counter()
    leftovers: Counter = Counter()
    for q in queries:
        intent, rest = lexicon.parse(q)
        leftovers.update(rest)
        best = coverage.best(intent) if intent else None
        share = len(best[0]) / len(intent) if best else 0.0
        status = ("unparsed" if not intent else "uncovered" if not best
                  else "thin" if share == 1.0 and best[2] < thin_size else "covered" if share == 1.0 else "partial")
        rows.append({"query": q, "intent": intent, "status": status, "coverage": share,
                     "feed": best[1] if best else None, "feed_size": best[2] if best else 0,
                     "covered_attrs": best[0] if best else frozenset()})
        if intent:
            intents[intent] += 1
    parsed = [r for r in rows if r["intent"]]
    return {
        "summary": _summary(rows, intents, head_share),
        "keys": _key_table(parsed),
        "top_intents": [{"intent": intent_label(i), "queries": c, "status": _status_of(rows, i)}
                        for i, c in intents.most_common(top)],
        "uncovered_intents": _uncovered_intents(rows, top),
        "unrecognised_words": [{"word": w, "queries": c} for w, c in leftovers.most_common(top)],
        "queries": [{"query": r["query"], "intent": intent_label(r["intent"]), "status": r["status"],
                     "coverage": round(r["coverage"], 3), "feed": r["feed"], "feed_size": r["feed_size"]}
                    for r in rows],
    }


def _status_of(rows: list[dict[str, Any]], intent: Intent) -> str:
    return next(r["status"] for r in rows if r["intent"] == intent)


def _summary(rows: list[dict[str, Any]], intents: Counter, head_share: float) -> dict[str, Any]:
    n = len(rows)
    parsed = sum(intents.values())
    ordered = [c for _, c in intents.most_common()]
    head, acc = 0, 0
    for c in ordered:
        if acc >= head_share * parsed:
            break
        head, acc = head + 1, acc + c
    statuses = Counter(r["status"] for r in rows)
    sizes = Counter(len(r["intent"]) for r in rows)
    return {
        "queries": n,
        "distinct_queries": len({normalize(r["query"]) for r in rows}),
        "parsed_queries": parsed,
        "distinct_intents": len(intents),
        "head_share": head_share,
        "head_intents": head,
        "head_queries": acc,
        "tail_intents": len(intents) - head,
        "tail_query_share": round(1 - acc / parsed, 4) if parsed else None,
        "singleton_intent_share": round(sum(1 for c in ordered if c == 1) / parsed, 4) if parsed else None,
        "attributes_per_query": {str(k): v for k, v in sorted(sizes.items())},
        "status": dict(statuses),
        "covered_share": round((statuses["covered"] + statuses["thin"]) / n, 4) if n else None,
        "uncovered_share": round(statuses["uncovered"] / n, 4) if n else None,
    }


def _key_table(parsed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per key: queries using it, distinct values asked, and how many had that value covered by a feed."""
    demand: Counter = Counter()
    covered: Counter = Counter()
    exact: Counter = Counter()
    values: dict[str, set[str]] = {}
    for r in parsed:
        for key in {k for k, _ in r["intent"]}:
            demand[key] += 1
            if any(k == key for k, _ in r["covered_attrs"]):
                covered[key] += 1
                if r["status"] in ("covered", "thin"):
                    exact[key] += 1
        for k, v in r["intent"]:
            values.setdefault(k, set()).add(v)
    total = len(parsed)
    return [{"key": k, "queries": d, "demand_share": round(d / total, 4), "distinct_values": len(values[k]),
             "covered": covered[k], "coverage": round(covered[k] / d, 4), "exactly_covered": exact[k]}
            for k, d in demand.most_common()]


def _uncovered_intents(rows: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    counts: Counter = Counter(r["intent"] for r in rows if r["status"] in ("uncovered", "partial") and r["intent"])
    example = {}
    for r in rows:
        example.setdefault(r["intent"], r["query"])
    return [{"intent": intent_label(i), "queries": c, "example": example[i]} for i, c in counts.most_common(top)]
