"""The label-free report stage: attribute statistics, feed coverage and search demand vs coverage.

Writes ``RUN/report/report.json``, ``demand.csv`` (per-key demand and coverage),
``uncovered_queries.csv`` and ``index.html``. Reads only pipeline artifacts and the search log,
never ground-truth labels.
"""
from __future__ import annotations

import csv
import io
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

import pinlanding
from pinlanding.collections import schemas
from pinlanding.collections.artifacts import read_table, write_json, write_text
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import StageContext
from pinlanding.evaluation import plots
from pinlanding.evaluation.config import EvaluationConfig
from pinlanding.collections.queries import read_queries
from pinlanding.evaluation.intent import Coverage, Lexicon, analyze
from pinlanding.evaluation.mapping import attr_key
from pinlanding.evaluation.render import product_lookup, render_page, sample_cards, spread


def resolve(path: str | Path) -> Path:
    """A configured path: as given when it exists (or is absolute), else relative to the project root."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return Path(pinlanding.__file__).resolve().parent / p


def load_artifacts(layout: RunLayout) -> tuple[dict[str, pa.Table | None], dict[str, str]]:
    """Every artifact the reports read; missing ones are None, with a note saying so."""
    wanted = {"products": (layout.products, schemas.PRODUCTS), "attributes": (layout.attributes, schemas.ATTRIBUTES),
              "vocabulary": (layout.vocabulary, schemas.VOCAB), "topics": (layout.topics, schemas.TOPICS),
              "assignments": (layout.assignments, schemas.ASSIGNMENTS), "feeds": (layout.feeds, schemas.FEEDS)}
    tables: dict[str, pa.Table | None] = {}
    notes: dict[str, str] = {}
    for name, (path, schema) in wanted.items():
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


def attribute_stats(attrs: pa.Table | None, n_products: int, head_share: float = 0.8, top: int = 10) -> dict[str, Any]:
    """Distinct values, attributes per product and long-tail share, overall and per key."""
    if attrs is None or attrs.num_rows == 0:
        return {"rows": 0, "keys": {}, "per_product": {}, "overall": value_stats(pd.Series(dtype=int), head_share)}
    df = attrs.select(["product_id", "key", "value"]).to_pandas().drop_duplicates()
    per_product = df.groupby("product_id").size()
    counts = per_product.to_numpy()
    missing = max(n_products - len(counts), 0)
    allc = np.concatenate([counts, np.zeros(missing, dtype=counts.dtype)]) if len(counts) or missing else counts
    keys = {}
    for key, sub in df.groupby("key", sort=True):
        vc = sub["value"].value_counts()
        keys[key] = {**value_stats(vc, head_share), "products": int(sub["product_id"].nunique()),
                     "top_values": [{"value": v, "products": int(c)} for v, c in vc.head(top).items()]}
    return {
        "rows": int(len(df)),
        "keys": keys,
        "per_product": {"mean": round(float(allc.mean()), 3) if len(allc) else None,
                        "median": float(np.median(allc)) if len(allc) else None,
                        "p90": float(np.percentile(allc, 90)) if len(allc) else None,
                        "max": int(allc.max()) if len(allc) else None,
                        "products_without": int(missing + (counts == 0).sum()),
                        "histogram": {str(k): int(v) for k, v in sorted(Counter(allc.tolist()).items())}},
        "overall": value_stats(df.groupby(["key", "value"]).size(), head_share),
    }


def feed_attrs(row: dict[str, Any]) -> list[tuple[str, str]]:
    """A feed's (or topic's) attributes in the shared (family, canonical value) space."""
    return sorted({attr_key(a["key"], a["value"]) for a in row.get("attributes") or [] if a and a.get("key")})


def feed_stats(feeds: pa.Table | None, products: pa.Table | None, k: int) -> dict[str, Any]:
    """Collection counts, sizes, attributes per collection, keys used and catalogue coverage."""
    catalogue = set(products.column("product_id").to_pylist()) if products is not None else set()
    n_products = len(catalogue)
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


def search_demand(cfg: EvaluationConfig, vocab: pa.Table | None, feeds: pa.Table | None) -> dict[str, Any] | None:
    """Search-intent analysis of the configured query log against the feeds; None when there is no log."""
    path = resolve(cfg.queries)
    if not path.exists():
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


def build_report(cfg: EvaluationConfig, layout: RunLayout) -> tuple[dict[str, Any], dict[str, pa.Table | None]]:
    """Compute the report's figures (no writes), and the artifacts they came from."""
    tables, notes = load_artifacts(layout)
    n_products = tables["products"].num_rows if tables["products"] is not None else 0
    return {
        "inputs": notes,
        "products": n_products,
        "value_head_share": cfg.value_head_share,
        "extraction": attribute_stats(tables["attributes"], n_products, cfg.value_head_share),
        "assignments": attribute_stats(tables["assignments"], n_products, cfg.value_head_share),
        "vocabulary": vocabulary_stats(tables["vocabulary"]),
        "topics": topic_stats(tables["topics"]),
        "feeds": feed_stats(tables["feeds"], tables["products"], cfg.k),
        "search": search_demand(cfg, tables["vocabulary"], tables["feeds"]),
    }, tables


def _charts(report: dict[str, Any]) -> dict[str, str]:
    charts = {}
    for name in ("extraction", "assignments"):
        hist = report[name]["per_product"].get("histogram") or {}
        if hist:
            vals = [int(k) for k, c in hist.items() for _ in range(c)]
            charts[f"{name}_per_product"] = plots.histogram(
                vals, f"{name}: attributes per product", "attributes", bins=range(0, max(vals) + 2))
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


def run_report(ctx: StageContext) -> dict[str, Any]:
    """Pipeline stage: write the label-free report under ``RUN/report/``."""
    start = time.perf_counter()
    cfg = ctx.cfg.evaluation
    report, tables = build_report(cfg, ctx.layout)
    out = ctx.layout.dir("report")
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
        samples = sample_cards([{"title": r["title"] or r["slug"], "slug": r["slug"], "size": r["size"],
                                 "attributes": feed_attrs(r),
                                 "product_ids": [p["product_id"] for p in r["products"] or []]}
                                for r in spread(rows, cfg.sample_collections)],
                               product_lookup(tables["products"]), per=cfg.k)
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
