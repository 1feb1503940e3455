"""The label-free report stage: attribute statistics, feed coverage and search demand vs coverage.

Writes ``RUN/report/report.json``, ``demand.csv`` (per-key demand and coverage),
``uncovered_queries.csv`` and ``index.html``. Reads only pipeline artifacts and the search log,
never ground-truth labels.
"""
from __future__ import annotations

import csv
import functools
import io
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa

from pinlanding.collections import schemas
from pinlanding.collections.artifacts import AnyPath, read_table, write_json, write_text
from pinlanding.collections.config import RayConfig
from pinlanding.collections.engines import map_parts
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import count_rows, part_names, read_part, select_rows
from pinlanding.collections.stage_inputs import Runtime, StageInputs, artifact, external
from pinlanding.evaluation import plots
from pinlanding.evaluation.config import EvaluationConfig
from pinlanding.collections.queries import read_queries
from pinlanding.evaluation.intent import Coverage, Lexicon, analyze
from pinlanding.evaluation.mapping import attr_key
from pinlanding.evaluation.render import product_lookup, render_page, sample_cards, spread


PER_TOPIC = ("vocabulary", "topics", "feeds")  # artifacts of O(vocabulary) or O(topics) rows


def load_artifacts(layout: RunLayout, names: tuple[str, ...] | None = None) -> tuple[dict[str, pa.Table | None],
                                                                                  dict[str, str]]:
    """The artifacts the reports read (``names``, default all), whole; missing ones are None, with a note
    saying so. The per-product ones are whole catalogues: the offline evaluation reads them on one machine."""
    wanted = {"products": (layout.products, schemas.PRODUCTS), "attributes": (layout.attributes, schemas.ATTRIBUTES),
              "vocabulary": (layout.vocabulary, schemas.VOCAB), "topics": (layout.topics, schemas.TOPICS),
              "assignments": (layout.assignments, schemas.ASSIGNMENTS), "feeds": (layout.feeds, schemas.FEEDS)}
    tables: dict[str, pa.Table | None] = {}
    notes: dict[str, str] = {}
    for name, (path, schema) in wanted.items():
        if names is not None and name not in names:
            continue
        try:
            tables[name] = read_table(path, schema)
            notes[name] = f"{tables[name].num_rows} rows"
        except FileNotFoundError:
            tables[name], notes[name] = None, "absent"
    return tables, notes


def value_stats(counts: pd.Series, head_share: float) -> dict[str, Any]:
    """Long-tail figures of one frequency table (value -> product count)."""
    counts = counts.sort_values(ascending=False)
    total = int(counts.sum())
    if total == 0:
        return {"distinct_values": 0, "occurrences": 0, "head_values": 0, "tail_value_share": None,
                "tail_occurrence_share": None, "singleton_value_share": None}
    cum = counts.cumsum().to_numpy()
    head = int(np.searchsorted(cum, head_share * total) + 1)
    return {"distinct_values": int(len(counts)), "occurrences": total, "head_values": head,
            "tail_value_share": round(1 - head / len(counts), 4),
            "tail_occurrence_share": round(1 - float(cum[head - 1]) / total, 4),
            "singleton_value_share": round(float((counts == 1).mean()), 4)}


@dataclass
class AttributeCounts:
    """Mergeable counts of (product, key, value) rows: one part's, or a whole artifact's."""

    rows: int = 0
    per_product: Counter = field(default_factory=Counter)  # attributes of a product -> products
    values: dict[str, Counter] = field(default_factory=dict)  # key -> value -> products
    key_products: Counter = field(default_factory=Counter)  # key -> products

    @classmethod
    def of(cls, attrs: pa.Table) -> "AttributeCounts":
        df = attrs.select(["product_id", "key", "value"]).to_pandas().drop_duplicates()
        return cls(rows=len(df), per_product=Counter(df.groupby("product_id").size().tolist()),
                   values={str(k): Counter(sub["value"].value_counts().to_dict()) for k, sub in df.groupby("key")},
                   key_products=Counter(df.groupby("key")["product_id"].nunique().to_dict()))

    def merge(self, other: "AttributeCounts") -> "AttributeCounts":
        """Sum with ``other`` (rows of one product are never split between the two)."""
        values = {k: Counter(v) for k, v in self.values.items()}
        for k, v in other.values.items():
            values.setdefault(k, Counter()).update(v)
        return AttributeCounts(self.rows + other.rows, self.per_product + other.per_product, values,
                               self.key_products + other.key_products)


def parted_attribute_counts(path: AnyPath, ray_cfg: RayConfig | None = None) -> AttributeCounts:
    """:class:`AttributeCounts` of a (part folder) ATTRIBUTES/ASSIGNMENTS artifact, part by part."""
    fn = functools.partial(_part_counts, path)
    return functools.reduce(AttributeCounts.merge, map_parts(fn, part_names(path), ray_cfg, desc="attribute counts"),
                            AttributeCounts())


def _part_counts(path: AnyPath, name: str) -> AttributeCounts:
    return AttributeCounts.of(read_part(path, name, schemas.ATTRIBUTES, ["product_id", "key", "value"]))


def _histogram_percentile(hist: dict[int, int], q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) of the values a {value: count} histogram holds."""
    keys = sorted(hist)
    ends = np.cumsum([hist[k] for k in keys])
    pos = q / 100 * (ends[-1] - 1)
    lo, hi = (keys[int(np.searchsorted(ends, i, side="right"))] for i in (np.floor(pos), np.ceil(pos)))
    return float(lo + (hi - lo) * (pos - np.floor(pos)))


def attribute_stats(attrs: pa.Table | AttributeCounts | None, n_products: int, head_share: float = 0.8,
                    top: int = 10) -> dict[str, Any]:
    """Distinct values, attributes per product and long-tail share, overall and per key."""
    counts = AttributeCounts.of(attrs) if isinstance(attrs, pa.Table) else attrs
    if counts is None or counts.rows == 0:
        return {"rows": 0, "keys": {}, "per_product": {}, "overall": value_stats(pd.Series(dtype=int), head_share)}
    hist = dict(counts.per_product)
    missing = max(n_products - sum(hist.values()), 0)
    if missing:
        hist[0] = hist.get(0, 0) + missing
    keys = {}
    for key in sorted(counts.values):
        vc = pd.Series(counts.values[key]).sort_values(ascending=False, kind="stable")
        keys[key] = {**value_stats(vc, head_share), "products": int(counts.key_products[key]),
                     "top_values": [{"value": v, "products": int(c)} for v, c in vc.head(top).items()]}
    n = sum(hist.values())
    overall = pd.Series({(k, v): c for k, vals in counts.values.items() for v, c in vals.items()}, dtype=int)
    return {
        "rows": counts.rows,
        "keys": keys,
        "per_product": {"mean": round(sum(k * c for k, c in hist.items()) / n, 3),
                        "median": _histogram_percentile(hist, 50),
                        "p90": _histogram_percentile(hist, 90),
                        "max": int(max(hist)),
                        "products_without": int(hist.get(0, 0)),
                        "histogram": {str(k): int(v) for k, v in sorted(hist.items())}},
        "overall": value_stats(overall, head_share),
    }


def feed_attrs(row: dict[str, Any]) -> list[tuple[str, str]]:
    """A feed's (or topic's) attributes in the shared (family, canonical value) space."""
    return sorted({attr_key(a["key"], a["value"]) for a in row.get("attributes") or [] if a and a.get("key")})


def feed_stats(feeds: pa.Table | None, products: pa.Table | AnyPath | None, k: int) -> dict[str, Any]:
    """Collection counts, sizes, attributes per collection, keys used and catalogue coverage.

    ``products``: the catalogue table, or its artifact path (read part by part for the feeds' products)."""
    shown = {p["product_id"] for r in (feeds.column("products").to_pylist() if feeds is not None else [])
             for p in r or []}
    if products is None:
        catalogue, n_products = set(), 0
    elif isinstance(products, pa.Table):
        catalogue, n_products = set(products.column("product_id").to_pylist()), products.num_rows
    else:
        catalogue = set(select_rows(products, schemas.PRODUCTS, "product_id", shown, ["product_id"])["product_id"]
                        .to_pylist())
        n_products = count_rows(products)
    if feeds is None or feeds.num_rows == 0:
        return {"collections": 0, "unique_topics": 0, "products_covered": 0, "products_covered_share": 0.0,
                "products_in_top_k": 0, "sizes": [], "keys": {}, "attributes_per_collection": {}}
    rows = feeds.select(["slug", "attributes", "products", "size"]).to_pylist()
    covered, top = set(), set()
    keys: Counter = Counter()
    per: Counter = Counter()
    for r in rows:
        pids = [p["product_id"] for p in r["products"] or []]
        covered.update(pids)
        top.update(pids[:k])
        attrs = feed_attrs(r)
        keys.update({a[0] for a in attrs})
        per[len(attrs)] += 1
    return {
        "collections": len(rows),
        "unique_topics": len({tuple(feed_attrs(r)) for r in rows}),
        "products_covered": len(covered & catalogue),
        "products_covered_share": round(len(covered & catalogue) / n_products, 4) if n_products else None,
        "products_in_top_k": len(top & catalogue),
        "unknown_products": len(covered - catalogue),
        "sizes": [len(r["products"] or []) for r in rows],
        "keys": dict(keys.most_common()),
        "attributes_per_collection": {str(a): c for a, c in sorted(per.items())},
    }


def vocabulary_stats(vocab: pa.Table | None) -> dict[str, Any]:
    if vocab is None:
        return {}
    df = vocab.select(["key", "status"]).to_pandas()
    df["status"] = df["status"].fillna("unknown")
    return {k: {str(s): int(c) for s, c in sub["status"].value_counts().items()} for k, sub in df.groupby("key")}


def topic_stats(topics: pa.Table | None) -> dict[str, Any]:
    if topics is None:
        return {}
    df = topics.select(["status", "reason"]).to_pandas().fillna("")
    return {"status": {str(s): int(c) for s, c in df["status"].value_counts().items()},
            "rejection_reasons": {str(s): int(c) for s, c in
                                  df.loc[df["status"] == "rejected", "reason"].value_counts().head(10).items()}}


def search_demand(cfg: EvaluationConfig, path: AnyPath | None, vocab: pa.Table | None,
                  feeds: pa.Table | None) -> dict[str, Any] | None:
    """Search-intent analysis of the query log at ``path`` against the feeds; None when there is no log."""
    if path is None or not path.exists():
        return None
    queries, skipped = read_queries(path, cfg.query_column)
    lexicon = Lexicon.build(vocab.to_pylist() if vocab is not None else [])
    rows = feeds.select(["slug", "attributes", "size"]).to_pylist() if feeds is not None else []
    coverage = Coverage.build((r["slug"], feed_attrs(r), r["size"] or 0) for r in rows)
    result = analyze(queries, lexicon, coverage, cfg.head_share, cfg.thin_feed_size)
    result["source"] = str(path)
    result["skipped_rows"] = dict(skipped)
    return result


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def build_report(cfg: EvaluationConfig, layout: RunLayout, queries: AnyPath | None,
                 ray_cfg: RayConfig | None = None) -> tuple[dict[str, Any], dict[str, pa.Table | None]]:
    """Compute the report's figures (no writes), and the small artifacts they came from; ``queries``: the
    search log (``evaluation.queries``, resolved), None for none.

    Per-product artifacts (products, attributes, assignments) are read part by part into mergeable
    counts; only the vocabulary, topics and feeds are held whole.
    """
    tables, notes = load_artifacts(layout, PER_TOPIC)
    counts: dict[str, AttributeCounts | None] = {}
    for name, path in (("attributes", layout.attributes), ("assignments", layout.assignments)):
        counts[name] = parted_attribute_counts(path, ray_cfg) if path.exists() else None
        notes[name] = f"{counts[name].rows} rows" if counts[name] else "absent"
    n_products = count_rows(layout.products) if layout.products.exists() else 0
    notes["products"] = f"{n_products} rows" if layout.products.exists() else "absent"
    return {
        "inputs": dict(sorted(notes.items())),
        "products": n_products,
        "value_head_share": cfg.value_head_share,
        "extraction": attribute_stats(counts["attributes"], n_products, cfg.value_head_share),
        "assignments": attribute_stats(counts["assignments"], n_products, cfg.value_head_share),
        "vocabulary": vocabulary_stats(tables["vocabulary"]),
        "topics": topic_stats(tables["topics"]),
        "feeds": feed_stats(tables["feeds"], layout.products if layout.products.exists() else None, cfg.k),
        "search": search_demand(cfg, queries, tables["vocabulary"], tables["feeds"]),
    }, tables


def _charts(report: dict[str, Any]) -> dict[str, str]:
    charts = {}
    for name in ("extraction", "assignments"):
        hist = report[name]["per_product"].get("histogram") or {}
        if hist:
            vals = [int(k) for k in hist]
            charts[f"{name}_per_product"] = plots.histogram(
                vals, f"{name}: attributes per product", "attributes", bins=range(0, max(vals) + 2),
                weights=list(hist.values()))
        keys = report[name]["keys"]
        if keys:
            top = sorted(keys.items(), key=lambda kv: -kv[1]["products"])[:15]
            charts[f"{name}_keys"] = plots.bar_chart([k for k, _ in top], [v["products"] for _, v in top],
                                                     f"{name}: products per key", "products")
    if report["feeds"]["sizes"]:
        charts["feed_sizes"] = plots.histogram(report["feeds"]["sizes"], "collection sizes", "products", bins=30)
    search = report["search"]
    if search and search["keys"]:
        keys = search["keys"]
        charts["demand"] = plots.grouped_bars([k["key"] for k in keys], {
            "queries asking": [k["queries"] for k in keys], "with a covering feed": [k["covered"] for k in keys]},
            "search demand and coverage per key", "queries")
    return charts


@dataclass(frozen=True)
class ReportInputs(StageInputs):
    """The report reads every per-product artifact, the vocabulary, topics and feeds, and the search log."""

    outputs = ("report",)
    catalog: AnyPath = artifact("catalog")
    attributes: AnyPath = artifact("attributes")
    vocabulary: AnyPath = artifact("vocabulary")
    topics: AnyPath = artifact("topics")
    assignments: AnyPath = artifact("assignments")
    feeds: AnyPath = artifact("feeds")
    queries: AnyPath | None = external("evaluation.queries")


class ReportCounts(TypedDict):
    products: int
    collections: int
    covered_share: float
    queries: int
    uncovered_query_share: float | None


def run_report(cfg: EvaluationConfig, ray_cfg: Runtime[RayConfig], inputs: ReportInputs) -> ReportCounts:
    """Pipeline stage: write the label-free report under ``RUN/report/``."""
    start = time.perf_counter()
    layout = inputs.layout
    report, tables = build_report(cfg, layout, inputs.queries, ray_cfg)
    out = layout.dir("report")
    search = report["search"]
    if search:
        write_text(out / "demand.csv", _csv(search["keys"], list(search["keys"][0]) if search["keys"] else ["key"]))
        uncovered = [q for q in search["queries"] if q["status"] in ("uncovered", "unparsed", "partial", "thin")]
        write_text(out / "uncovered_queries.csv",
                   _csv(uncovered, ["query", "intent", "status", "coverage", "feed", "feed_size"]))
    samples = []
    if tables["feeds"] is not None and tables["feeds"].num_rows:
        rows = sorted(tables["feeds"].select(["slug", "title", "attributes", "products", "size"]).to_pylist(),
                      key=lambda r: (-(r["size"] or 0), r["slug"]))
        shown = [{"title": r["title"] or r["slug"], "slug": r["slug"], "size": r["size"], "attributes": feed_attrs(r),
                  "product_ids": [p["product_id"] for p in r["products"] or []]} for r in spread(rows, cfg.sample_collections)]
        products = select_rows(layout.products, schemas.PRODUCTS, "product_id",
                               {p for c in shown for p in c["product_ids"][:cfg.k]}, ["product_id", "title", "image_path"])
        samples = sample_cards(shown, product_lookup(products), per=cfg.k)
    # the full per-query table is in uncovered_queries.csv; report.json keeps the summaries
    saved = {**report, "search": {k: v for k, v in search.items() if k != "queries"} if search else None}
    saved["feeds"] = {k: v for k, v in report["feeds"].items() if k != "sizes"}
    saved["seconds"] = round(time.perf_counter() - start, 3)
    write_json(out / "report.json", saved)
    write_text(out / "index.html", render_page("report.html", r=saved, charts=_charts(report), samples=samples))
    return {"products": report["products"], "collections": report["feeds"]["collections"],
            "covered_share": report["feeds"]["products_covered_share"],
            "queries": search["summary"]["queries"] if search else 0,
            "uncovered_query_share": search["summary"]["uncovered_share"] if search else None}
