"""The evaluation's figures, computed from the run's tables, the labels and the search log (no I/O).

:func:`measure` judges every collection against the labels (Precision@k, NDCG@k per attribute family),
the assignments and the raw extraction (attribute Recall@k), the search-log baseline built from the same
catalogue, and the search demand the collections cover. Writing, rendering and printing the results is
:mod:`pinlanding.evaluation.present`.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pinlanding.evaluation import metrics
from pinlanding.evaluation.baseline import build_baseline, product_texts
from pinlanding.evaluation.config import EvaluationConfig
from pinlanding.evaluation.graph import by_source, colour_mix, judged_rows, reliability
from pinlanding.evaluation.intent import Coverage, Lexicon, analyze
from pinlanding.evaluation.judge import Judge, judge_collection
from pinlanding.evaluation.labels import Labels
from pinlanding.evaluation.mapping import FAMILIES, attr_key, how_matched
from pinlanding.evaluation.report import feed_attrs

# PinLanding (Pinterest, 2025) as published: collection P@10 of the search-log baseline and of
# PinLanding, attribute Recall@10 on Fashion200K, and the growth in unique topics.
PUBLISHED = {"baseline_precision_at_10": 0.84, "pinlanding_precision_at_10": 0.96,
             "fashion200k_recall_at_10": 0.997, "unique_topics_ratio": 4.0}


def summarize(results: list[dict[str, Any]], min_matches: int = 0) -> dict[str, Any]:
    """Overall and per-family means of judged collections, with counts of those not judged and why.

    ``min_matches``: collections whose attributes fewer catalogue products carry (by their labels) are
    not judged ("unanswerable"): used for the baseline, whose queries come from another shop's log.
    """
    if min_matches:
        results = [r if not r["judged"] or r["catalogue_matches"] >= min_matches else
                   {**r, "judged": False, "families": {}, "reason": f"fewer than {min_matches} labelled matches "
                                                                   "in the catalogue"} for r in results]
    judged = [r for r in results if r["judged"]]
    families: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for fam, p in r["families"].items():
            if p is not None:
                families[fam].append(p)
    return {
        "collections": len(results),
        "judged": len(judged),
        "not_judged": len(results) - len(judged),
        "not_judged_reasons": dict(Counter(r["reason"] for r in results if not r["judged"]).most_common(20)),
        "precision": _r(metrics.mean(r["precision"] for r in judged)),
        "precision_strict": _r(metrics.mean(r["precision_strict"] for r in results if r["precision_strict"] is not None)),
        "ndcg": _r(metrics.mean(r["ndcg"] for r in judged)),
        "families": {f: {"precision": _r(metrics.mean(families[f])), "collections": len(families[f])}
                     for f in FAMILIES if f in families},
    }


def _r(v: float | None, d: int = 4) -> float | None:
    return None if v is None else round(float(v), d)


def judge_feeds(judge: Judge, feeds: pa.Table | None, k: int) -> list[dict[str, Any]]:
    """Judge every collection of the run."""
    if feeds is None:
        return []
    out = []
    for row in feeds.select(["slug", "title", "attributes", "products", "size"]).to_pylist():
        products = row["products"] or []
        attrs = feed_attrs(row)
        pids = [p["product_id"] for p in products]
        scores = [p["score"] if p["score"] is not None else float("nan") for p in products]
        res = judge_collection(judge, attrs, pids, None if any(np.isnan(scores)) else scores, k)
        out.append({"slug": row["slug"], "title": row["title"] or row["slug"], "size": len(pids),
                    "attributes": attrs, "raw_attributes": [(a["key"], a["value"]) for a in row["attributes"] or []],
                    "product_ids": pids[: 3 * k], **res})
    return out


def assignment_metrics(judge: Judge, table: pa.Table | None, k: int) -> dict[str, Any]:
    """Per family: attribute Recall@k (Fashion200K: an attribute query succeeds when a product carrying
    that label is among the k most confident), and precision / label recall of the assignments."""
    if table is None or table.num_rows == 0:
        return {}
    cols = table.select(["product_id", "key", "value", "confidence"]).to_pydict()
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (key, value) in enumerate(zip(cols["key"], cols["value"])):
        groups[(key, value)].append(i)
    pids = np.asarray(cols["product_id"], dtype=object)
    conf = np.asarray([1.0 if c is None else c for c in cols["confidence"]], dtype=float)
    fam: dict[str, dict[str, Any]] = defaultdict(lambda: {"hits": [], "assigned": 0, "correct": 0, "labelled": 0,
                                                          "found": 0, "values": 0})
    unjudged: Counter = Counter()
    for (key, value), rows in groups.items():
        family, canon = attr_key(key, value)
        found = judge.attribute(family, canon) if family in FAMILIES else None
        if found is None:
            unjudged[family] += len(rows)
            continue
        match, has = found
        rows_a = np.asarray(rows)
        idx = judge.index(pids[rows_a].tolist())
        keep = has[idx]
        order = np.argsort(-conf[rows_a][keep], kind="stable")
        rel = match[idx][keep][order].astype(float)
        f = fam[family]
        f["values"] += 1
        f["assigned"] += int(keep.sum())
        f["correct"] += int(rel.sum())
        f["labelled"] += int(match[:-1].sum())
        f["found"] += int(len(set(idx[keep][match[idx][keep]].tolist())))
        hit = metrics.hit_at_k(rel.tolist(), k, conf[rows_a][keep][order].tolist())
        if hit is not None:
            f["hits"].append(hit)
    per = {f: {"values": v["values"], "recall_at_k": _r(metrics.mean(v["hits"])),
               "precision": _r(v["correct"] / v["assigned"]) if v["assigned"] else None,
               "label_recall": _r(v["found"] / v["labelled"]) if v["labelled"] else None}
           for f, v in sorted(fam.items())}
    hits = [h for v in fam.values() for h in v["hits"]]
    assigned = sum(v["assigned"] for v in fam.values())
    return {"recall_at_k": _r(metrics.mean(hits)), "values": len(hits),
            "precision": _r(sum(v["correct"] for v in fam.values()) / assigned) if assigned else None,
            "families": per, "unjudged_rows": dict(unjudged)}


def mapping_report(judge: Judge, labels: Labels, vocab: pa.Table | None,
                   results: list[dict[str, Any]]) -> dict[str, Any]:
    """How each vocabulary value (and feed attribute) met the labels: family, canonical, label spellings."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    rows = vocab.select(["key", "value", "status", "product_count"]).to_pylist() if vocab is not None else []
    for r in rows:
        seen.setdefault((r["key"], r["value"]), {"status": r["status"], "products": r["product_count"]})
    for c in results:
        for a in c.get("raw_attributes", []):
            seen.setdefault(tuple(a), {"status": "feed attribute", "products": None})
    entries = []
    for (key, value), info in sorted(seen.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        family, canon = attr_key(key, value)
        if family not in FAMILIES:
            entries.append({"key": key, "value": value, "family": None, "canonical": canon, "rule": "no family",
                            "parts": [], "labels": [], **info})
            continue
        accepted = judge.accepted(family, canon)
        parts = judge.parts(family, canon) or []
        spellings = sorted({s for f, v in parts for a in judge.accepted(f, v) for s in labels.spellings[f][a]})
        rule = how_matched(family, value, canon, accepted)
        entries.append({"key": key, "value": value, "family": family, "canonical": canon,
                        "rule": "decomposed" if rule == "unmatched" and parts else rule,
                        "parts": [f"{f}={v}" for f, v in parts], "labels": spellings, **info})
    rules = Counter(e["rule"] for e in entries)
    return {"entries": entries, "rules": dict(rules),
            "unmatched": [f"{e['key']}={e['value']}" for e in entries if e["rule"] in ("unmatched", "no family")]}


def baseline_results(judge: Judge, products: pa.Table, queries: list[str], lexicon: Lexicon, k: int,
                     min_size: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build and judge the search-log baseline; also its unique-topic count (intents that at least
    ``min_size`` products fill, as ``feeds.min_feed_size`` asks of a feed)."""
    cols = products.select(["product_id", "title", "merchant_tags"]).to_pydict()
    built = build_baseline(cols["product_id"], product_texts(cols["title"], cols["merchant_tags"]), queries,
                           lexicon, k=k)
    results = []
    for b in built:
        res = judge_collection(judge, sorted(b.intent), b.product_ids, b.scores, k)
        results.append({"slug": b.query, "title": b.query, "size": b.matched, "attributes": sorted(b.intent),
                        "product_ids": b.product_ids[: 3 * k], "queries": b.queries, **res})
    # a baseline topic is a distinct query intent the catalogue can fill: at least `min_feed_size`
    # products whose labels match all of it (lexical matching alone finds "products" for nearly any query)
    fillable = {frozenset(map(tuple, r["attributes"])) for r in results
                if r["catalogue_matches"] is not None and r["catalogue_matches"] >= min_size}
    topics = {"distinct_queries": len(built), "distinct_intents": len({b.intent for b in built if b.intent}),
              "unique_topics": len(fillable), "min_products": min_size}
    return results, topics


def shared_intents(feeds: list[dict[str, Any]], base: list[dict[str, Any]]) -> dict[str, Any]:
    """P@k of the feeds and of the baseline on the intents both have (the same demand, judged alike)."""
    fmap: dict[tuple, list[float]] = defaultdict(list)
    bmap: dict[tuple, list[float]] = defaultdict(list)
    for r in feeds:
        if r["judged"]:
            fmap[tuple(r["attributes"])].append(r["precision"])
    for r in base:
        if r["judged"]:
            bmap[tuple(r["attributes"])].append(r["precision"])
    common = sorted(set(fmap) & set(bmap))
    return {"intents": len(common),
            "content_first_precision": _r(metrics.mean(metrics.mean(fmap[c]) for c in common)),
            "baseline_precision": _r(metrics.mean(metrics.mean(bmap[c]) for c in common))}


@dataclass
class Evaluation:
    """What :func:`measure` finds: the figures (``metrics.json``), how each value met the labels
    (``mapping.json``), every judged collection and baseline query, the top search intents, and the judge."""

    metrics: dict[str, Any]
    mapping: dict[str, Any]
    collections: list[dict[str, Any]]
    baseline: list[dict[str, Any]]
    top_intents: list[dict[str, Any]]
    judge: Judge


def measure(tables: dict[str, pa.Table | None], labels: Labels, queries: list[str], cfg: EvaluationConfig,
            min_feed_size: int, min_confidence: float) -> Evaluation:
    """Judge the run's collections, assignments and extraction, and the search-log baseline (no I/O).

    ``tables``: the run's artifacts (:func:`~pinlanding.evaluation.report.load_artifacts`); ``queries``: the
    search log; ``min_feed_size`` and ``min_confidence``: the feeds stage's settings the run was built with.
    """
    k = cfg.k
    products = tables["products"]
    # compound values are decomposed with the general lexicon only: fixed, not learned from the run
    judge = Judge(labels, products.column("product_id").to_pylist(), lexicon=Lexicon.build())
    feed_res = judge_feeds(judge, tables["feeds"], k)
    m: dict[str, Any] = {"k": k, "labels_read": {"records": labels.n_records, "skipped": dict(labels.skipped),
                                                 "products_labelled": len(set().union(*labels.values.values()))
                                                 if labels.values else 0},
                         "published": PUBLISHED}
    m["collections"] = summarize(feed_res)
    m["attributes"] = assignment_metrics(judge, tables["assignments"], k)
    m["extraction"] = assignment_metrics(judge, tables["attributes"], k)
    if tables["assignments"] is not None:
        rows = judged_rows(labels, tables["assignments"])
        m["graph"] = {"by_source": by_source(rows), "feed_rows": by_source(rows, min_confidence),
                      "reliability": reliability(rows), "colour_mix": colour_mix(labels, rows)}
    mapping = mapping_report(judge, labels, tables["vocabulary"], feed_res)
    m["mapping"] = {"rules": mapping["rules"], "unmatched": mapping["unmatched"][:200],
                    "unmatched_count": len(mapping["unmatched"])}

    vocab_rows = tables["vocabulary"].to_pylist() if tables["vocabulary"] is not None else []
    lexicon = Lexicon.build(vocab_rows)
    feeds = tables["feeds"]
    feeds_rows = feeds.select(["slug", "attributes", "size"]).to_pylist() if feeds is not None else []
    demand = analyze(queries, lexicon, Coverage.build((r["slug"], feed_attrs(r), r["size"] or 0)
                                                      for r in feeds_rows), cfg.head_share, cfg.thin_feed_size)
    catalogue = set(products.column("product_id").to_pylist())
    covered = catalogue & {p for r in (feeds.column("products").to_pylist() if feeds is not None else [])
                           for x in r or [] for p in [x["product_id"], *(x.get("variants") or [])]}  # a card's variants too
    m["coverage"] = {"unique_topics": len({tuple(r["attributes"]) for r in feed_res}),
                     "products_covered": len(covered),
                     "products_covered_share": _r(len(covered) / products.num_rows) if products.num_rows else None,
                     "queries": len(queries), "uncovered_query_share": demand["summary"]["uncovered_share"],
                     "covered_query_share": demand["summary"]["covered_share"]}
    base_res: list[dict[str, Any]] = []
    if cfg.baseline and queries:
        base_res, topics = baseline_results(judge, products, queries, lexicon, k, min_feed_size)
        # headline: the queries this catalogue can answer (>= k labelled products match them); all queries too
        m["baseline"] = {**summarize(base_res, min_matches=k), "all_queries": summarize(base_res),
                         "topics": topics}
        m["coverage"]["baseline_unique_topics"] = topics["unique_topics"]
        m["coverage"]["unique_topics_ratio"] = (_r(m["coverage"]["unique_topics"] / topics["unique_topics"], 3)
                                                if topics["unique_topics"] else None)
        m["shared_intents"] = shared_intents(feed_res, base_res)
    return Evaluation(m, mapping, feed_res, base_res, demand["top_intents"], judge)
