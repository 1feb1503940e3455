"""The vocab stage's report: raw vs curated statistics, drops, merges, held values (JSON and Markdown)."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from pinlanding.vocab.counts import ValueStats
from pinlanding.vocab.curator import VocabCurator

RARE_LIMIT = 10  # the report's "share of values used by fewer than 10 products"


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


def report_markdown(report: dict[str, Any]) -> str:
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
