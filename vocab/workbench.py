"""What the review app's workbench pages query: filters and sorting of values and topics, a value's
products (paged, by source and confidence), and what the feeds stage made of each topic.

Pure functions over the run's artifacts; :mod:`pinlanding.vocab.review` renders them. The same filter
functions select the rows of a bulk decision, so the count a merchandiser confirms is the set decided.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from pinlanding.collections.artifacts import read_table
from pinlanding.collections.parts import iter_parts
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.schemas import ASSIGNMENTS, ATTRIBUTES, FEEDS, FEEDS_DROPPED

SOURCES = ("text", "photo", "both")
PHOTO_SOURCES = {"image", "encoder"}  # extraction's photo evidence and the dual encoder's photo tower
VALUE_SORTS = {"products": lambda r: (-(r["product_count"] or 0), r["value"]),
               "value": lambda r: (r["value"].lower(), r["value"]),
               "score": lambda r: (-(r["judge_score"] if r["judge_score"] is not None else -1.0), r["value"])}
TOPIC_SORTS = {"score": lambda t: (-(t["judge_score"] if t["judge_score"] is not None else -1.0), t["topic_id"]),
               "size": lambda t: (-(t["support"] or 0), t["topic_id"]),
               "title": lambda t: ((t["title"] or "").lower(), t["topic_id"])}


def number(x: float | None, digits: int = 4) -> str:
    """A score as it is: up to ``digits`` significant digits, never rounded across a threshold
    (0.4988 shows as 0.4988, not 0.50)."""
    return "" if x is None else f"{x:.{digits}g}"


def source_kind(source: str | None) -> str:
    """``text``, ``photo`` or ``both`` for an assignment's or extraction's source (``title+image``, ``encoder``...)."""
    parts = set((source or "").split("+")) - {""}
    photo, text = parts & PHOTO_SOURCES, parts - PHOTO_SOURCES
    return "both" if photo and text else "photo" if photo else "text"


def value_sources(provenance: str | None) -> dict[str, int]:
    """Products per source kind from a vocabulary row's provenance."""
    try:
        sources = json.loads(provenance or "{}").get("sources") or {}
    except (ValueError, AttributeError):
        return {}
    out: dict[str, int] = {}
    for source, n in sources.items():
        out[source_kind(source)] = out.get(source_kind(source), 0) + int(n)
    return out


@dataclass(frozen=True)
class ValueFilter:
    q: str = ""
    status: str = ""
    sort: str = "products"

    def apply(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        q = self.q.strip().lower()
        out = [r for r in rows if (not q or q in r["value"].lower() or any(q in v.lower() for v in r["variants"] or []))
               and (not self.status or r["status"] == self.status)]
        return sorted(out, key=VALUE_SORTS.get(self.sort, VALUE_SORTS["products"]))

    def params(self) -> dict[str, str]:
        return {"q": self.q, "status": self.status, "sort": self.sort}


@dataclass(frozen=True)
class TopicFilter:
    q: str = ""
    key: str = ""
    status: str = ""
    published: str = ""  # yes | no | ""
    min_size: int | None = None
    max_size: int | None = None
    min_score: float | None = None
    max_score: float | None = None
    sort: str = "score"

    def apply(self, topics: Iterable[dict[str, Any]], outcome: dict[str, "Outcome"]) -> list[dict[str, Any]]:
        q = self.q.strip().lower()

        def ok(t: dict[str, Any]) -> bool:
            text = " ".join([t["title"] or "", t["query"] or "", *(a["value"] for a in t["attributes"] or [])]).lower()
            score, size = t["judge_score"], t["support"] or 0
            published = t["topic_id"] in outcome and outcome[t["topic_id"]].published
            return ((not q or q in text) and (not self.key or any(a["key"] == self.key for a in t["attributes"] or []))
                    and (not self.status or t["status"] == self.status)
                    and (not self.published or published == (self.published == "yes"))
                    and (self.min_size is None or size >= self.min_size)
                    and (self.max_size is None or size <= self.max_size)
                    and (self.min_score is None or (score is not None and score >= self.min_score))
                    and (self.max_score is None or (score is not None and score <= self.max_score)))
        return sorted(filter(ok, topics), key=TOPIC_SORTS.get(self.sort, TOPIC_SORTS["score"]))

    def params(self) -> dict[str, str]:
        return {k: "" if v is None else str(v) for k, v in self.__dict__.items()}

    @classmethod
    def parse(cls, form: dict[str, str]) -> "TopicFilter":
        """From query or form fields; an unparseable number raises ``ValueError`` naming the field."""
        def num(name: str, kind: type) -> Any:
            raw = (form.get(name) or "").strip()
            try:
                return kind(raw) if raw else None
            except ValueError:
                raise ValueError(f"{name} must be a number, not {raw!r}") from None
        return cls(form.get("q", ""), form.get("key", ""), form.get("status", ""), form.get("published", ""),
                   num("min_size", int), num("max_size", int), num("min_score", float), num("max_score", float),
                   form.get("sort", "") or "score")


@dataclass(frozen=True)
class Outcome:
    """What the last feeds run made of a topic: published (with its products) or dropped with a reason."""

    published: bool
    slug: str
    title: str | None
    size: int | None
    reason: str = ""
    detail: str = ""
    products: tuple[dict[str, Any], ...] = ()
    aliases: tuple[str, ...] = ()


def feed_outcomes(layout: RunLayout) -> dict[str, Outcome]:
    """topic_id -> :class:`Outcome` from ``feeds/feeds.parquet`` and ``feeds/dropped.parquet`` (empty before feeds)."""
    out: dict[str, Outcome] = {}
    dropped = layout.dir("feeds") / "dropped.parquet"
    if dropped.exists():
        for d in read_table(dropped, FEEDS_DROPPED).to_pylist():
            if d["topic_id"]:
                out[d["topic_id"]] = Outcome(False, d["slug"] or "", d["title"], d["size"], d["reason"], d["detail"] or "")
    if layout.feeds.exists():
        for f in read_table(layout.feeds, FEEDS).to_pylist():
            out[f["topic_id"]] = Outcome(True, f["slug"], f["title"], f["size"], products=tuple(f["products"] or []),
                                         aliases=tuple(f["aliases"] or []))
    return out


def value_products(layout: RunLayout, key: str, value: str, source: str = "",
                   min_confidence: float | None = None) -> list[dict[str, Any]]:
    """Products carrying (key, value): the assignments if the assign stage ran, else the curated extraction;
    each ``{product_id, confidence, source}`` (source as :func:`source_kind`), most confident first."""
    path, schema = ((layout.assignments, ASSIGNMENTS) if layout.assignments.exists()
                    else (layout.curated_attributes, ATTRIBUTES))
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    for _, part in iter_parts(path, schema, ["product_id", "key", "value", "confidence", "source"]):
        hit: pa.Table = part.filter(pc.and_(pc.equal(part["key"], key), pc.equal(part["value"], value)))
        for pid, conf, src in zip(*(hit.column(c).to_pylist() for c in ("product_id", "confidence", "source"))):
            kind = source_kind(src)
            if (not source or kind == source) and (min_confidence is None or (conf or 0.0) >= min_confidence):
                rows.append({"product_id": pid, "confidence": conf, "source": kind})
    return sorted(rows, key=lambda r: (-(r["confidence"] or 0.0), r["product_id"]))
