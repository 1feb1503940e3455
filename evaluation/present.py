"""The evaluation's outputs: ``metrics.json``, ``mapping.json``, ``collections.jsonl``, ``evaluation.html``
and the terminal tables, from an :class:`~pinlanding.evaluation.measure.Evaluation`."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from pinlanding.collections.artifacts import AnyPath, write_json, write_text
from pinlanding.evaluation import plots
from pinlanding.evaluation.intent import intent_label
from pinlanding.evaluation.judge import Judge
from pinlanding.evaluation.mapping import CORE_FAMILIES, FAMILIES
from pinlanding.evaluation.measure import PUBLISHED, Evaluation
from pinlanding.evaluation.render import product_lookup, render_page, sample_cards, spread


def _marker(judge: Judge):
    def mark(c: dict[str, Any], pids: list[str]) -> list[str]:
        idx = judge.index(pids)
        status = np.array(["match"] * len(pids), dtype=object)
        for a in c["attributes"]:
            found = judge.attribute(*a) if a[0] in FAMILIES else None
            if found is None:
                return ["unknown"] * len(pids)
            m, h = found[0][idx], found[1][idx]
            status[(~h) & (status == "match")] = "unknown"
            status[h & ~m] = "miss"
        return status.tolist()
    return mark


def _charts(m: dict[str, Any], feed_res: list[dict[str, Any]], base_res: list[dict[str, Any]]) -> dict[str, str]:
    charts = {}
    fams = [f for f in FAMILIES if f in m["collections"]["families"]]
    if fams:
        series = {"content-first": [m["collections"]["families"][f]["precision"] or 0 for f in fams]}
        if m.get("baseline"):
            series["search-log baseline"] = [(m["baseline"]["families"].get(f) or {}).get("precision") or 0
                                             for f in fams]
        charts["families"] = plots.grouped_bars(fams, series, f"Precision@{m['k']} per attribute family",
                                                "precision")
    charts["precision_hist"] = plots.histogram([r["precision"] for r in feed_res if r["judged"]],
                                               f"Precision@{m['k']} per collection", "precision",
                                               bins=[i / 10 for i in range(11)])
    charts["ndcg_hist"] = plots.histogram([r["ndcg"] for r in feed_res if r["judged"]],
                                          f"NDCG@{m['k']} per collection", "NDCG", bins=[i / 10 for i in range(11)])
    rec = (m.get("attributes") or {}).get("families") or {}
    if rec:
        names = [f for f in rec if rec[f]["recall_at_k"] is not None]
        charts["recall"] = plots.bar_chart(names, [rec[f]["recall_at_k"] for f in names],
                                           f"attribute Recall@{m['k']} per family", "recall",
                                           reference=PUBLISHED["fashion200k_recall_at_10"],
                                           reference_label="PinLanding on Fashion200K", limit=1.0)
    headline = {"content-first": m["collections"]["precision"],
                "baseline (this catalogue)": (m.get("baseline") or {}).get("precision"),
                "PinLanding published": PUBLISHED["pinlanding_precision_at_10"],
                "PinLanding's baseline": PUBLISHED["baseline_precision_at_10"]}
    headline = {k: v for k, v in headline.items() if v is not None}
    charts["headline"] = plots.bar_chart(list(headline), list(headline.values()), f"collection Precision@{m['k']}",
                                         "precision", limit=1.0)
    _ = base_res
    return charts


def print_metrics(m: dict[str, Any], console: Console) -> None:
    """The headline figures as terminal tables."""
    t = Table(title=f"pinlanding evaluation (k={m['k']})")
    t.add_column("metric")
    t.add_column("content-first", justify="right")
    t.add_column("search-log baseline (answerable queries)", justify="right")
    t.add_column("PinLanding published", justify="right")
    c, b = m["collections"], m.get("baseline") or {}
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    t.add_row(f"collection P@{m['k']}", fmt(c["precision"]), fmt(b.get("precision")),
              f"{PUBLISHED['pinlanding_precision_at_10']} (baseline {PUBLISHED['baseline_precision_at_10']})")
    t.add_row(f"P@{m['k']} strict (unlabelled = miss)", fmt(c["precision_strict"]), fmt(b.get("precision_strict")), "")
    t.add_row(f"NDCG@{m['k']}", fmt(c["ndcg"]), fmt(b.get("ndcg")), "")
    t.add_row("collections judged / total", f"{c['judged']} / {c['collections']}",
              f"{b.get('judged', 0)} / {b.get('collections', 0)}", "")
    for f in CORE_FAMILIES:
        cf, bf = c["families"].get(f), (b.get("families") or {}).get(f)
        if cf or bf:
            t.add_row(f"  P@{m['k']} {f}", f"{fmt((cf or {}).get('precision'))} ({(cf or {}).get('collections', 0)})",
                      f"{fmt((bf or {}).get('precision'))} ({(bf or {}).get('collections', 0)})", "")
    a = m.get("attributes") or {}
    t.add_row(f"attribute Recall@{m['k']}", fmt(a.get("recall_at_k")), "",
              f"{PUBLISHED['fashion200k_recall_at_10']} (Fashion200K)")
    cov = m["coverage"]
    t.add_row("unique topics", str(cov["unique_topics"]), str(cov.get("baseline_unique_topics", "n/a")),
              f"x{PUBLISHED['unique_topics_ratio']:.0f} vs baseline")
    t.add_row("products covered", fmt(cov["products_covered_share"]), "", "")
    t.add_row("queries without any collection", fmt(cov.get("uncovered_query_share")), "", "")
    console.print(t)
    g = m.get("graph")
    if g:
        src = g["by_source"]
        console.print("graph rows by source (share, precision vs labels): " + ", ".join(
            f"{name} {v['share']:.1%} {fmt(v['precision'])}" for name, v in src.items() if isinstance(v, dict))
            + f"; attributes per product {src['attributes_per_product']} (extraction {src['extraction_per_product']})")
        r = Table(title="confidence reliability (graph rows the labels judge)")
        for col in ("confidence", "rows", "mean confidence", "precision", "gap"):
            r.add_column(col, justify="right")
        for b in g["reliability"]:
            r.add_row(b["bin"], str(b["rows"]), fmt(b["mean_confidence"]), fmt(b["precision"]),
                      f"{b['gap']:+.3f}" + ("" if b["ok"] else " !"))
        console.print(r)
        worst = g["colour_mix"]["worst"]
        if worst:
            console.print(f"colour mix: largest graph/label share ratio {worst['ratio']} ({worst['value']}); "
                          f"over 1.5x: {', '.join(g['colour_mix']['over_1_5x']) or 'none'}; values the labels "
                          f"never use: {', '.join(g['colour_mix']['not_in_labels']) or 'none'}")


def render_html(ev: Evaluation, products: pa.Table, sample_collections: int) -> str:
    """``evaluation.html``: the figures, charts, sample collections with their photos, the value mapping."""
    m, k = ev.metrics, ev.metrics["k"]
    lookup = product_lookup(products)
    ranked = sorted([r for r in ev.collections if r["judged"]], key=lambda r: (r["precision"], r["slug"]))
    base_ranked = sorted([r for r in ev.baseline if r["judged"]], key=lambda r: (-r["queries"], r["slug"]))
    return render_page("evaluation.html", m=m, charts=_charts(m, ev.collections, ev.baseline),
                       samples=sample_cards(spread(ranked, sample_collections), lookup, k, _marker(ev.judge)),
                       base_samples=sample_cards(base_ranked[: max(sample_collections // 2, 1)], lookup, k,
                                                 _marker(ev.judge)),
                       mapping=ev.mapping, top_intents=ev.top_intents[:15], intent_label=intent_label)


def write_outputs(ev: Evaluation, out: AnyPath, html: str) -> None:
    """Write the report folder's evaluation files."""
    write_json(out / "metrics.json", ev.metrics)
    write_json(out / "mapping.json", ev.mapping)
    write_text(out / "collections.jsonl", "".join(
        json.dumps({k: v for k, v in r.items() if k != "product_ids"}, default=list) + "\n" for r in ev.collections))
    write_text(out / "evaluation.html", html)
