"""Accuracy and calibration of the feed API's query -> collection mapping on the labelled query sample.

    python benchmarks/eval_query_mapping.py [--run runs/dev] [--labels evaluation/data/query_labels.tsv]
                                            [--no-embed] [--fit] [--show dev|test|all]

Labels (see ``evaluation/data/README.md``): per query the attributes it asks for (``wants``, written by hand)
and the right collections of the labelled run (``right``; ``-`` when no collection fits, so ``none`` is the
right answer; ``NONE`` among slugs when ``none`` is also acceptable). An answer is

* **right**: the top collection is one of ``right`` (or ``none`` where ``none`` is right);
* **honest partial**: ``match: partial``, and the collection asks nothing the query did not (its attributes
  are a subset of ``wants``, a broader colour/material/pattern/product type counting) and names the
  query's product type: a coarser page, with the missing attributes listed as unmet;
* otherwise **wrong** (a different product type, an attribute the query did not ask for, ``exact`` claimed
  for a partial, or ``none`` where a collection fits).

``--fit`` fits the confidence (a logistic model of the candidate's features) on the **dev** split only and
writes ``feeds/calibration.json``; the test split is never used for fitting. Prints one JSON document.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABBR = {"cat": "category", "col": "color", "mat": "material", "pat": "pattern", "gen": "gender", "occ": "occasion",
        "brand": "brand", "neck": "neck", "fit": "fit", "sleeve": "sleeve", "len": "length", "season": "season",
        "style": "style"}


def read_labels(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\"))


def wants_of(text: str) -> set[tuple[str, str]]:
    from pinlanding.evaluation.mapping import attr_key

    out = set()
    for part in text.split(";"):
        if part.strip():
            k, v = part.split("=", 1)
            out.add(attr_key(ABBR.get(k.strip(), k.strip()), v.strip()))
    return out


def honest_subset(collection: frozenset, wants: set) -> bool:
    """Every attribute of the collection is wanted (a broader value of a broader family counts), and it names
    a wanted product type."""
    from pinlanding.evaluation.mapping import accepts
    from pinlanding.feeds.matching import BROADER_FAMILIES

    def ok(fam: str, v: str) -> bool:
        return (fam, v) in wants or (fam in BROADER_FAMILIES and any(f == fam and accepts(fam, v, u) for f, u in wants))

    return all(ok(f, v) for f, v in collection) and any(f == "category" for f, _ in collection)


def judge(label: dict, result, matcher) -> str:
    """right | honest_partial | wrong (see the module docstring)."""
    right = label["right"].split()
    none_ok = right == ["-"] or "NONE" in right
    if result.match == "none":
        return "right" if none_ok else "wrong"
    if right == ["-"]:
        return "wrong"
    top = matcher.feeds[result.best.index]
    if top["slug"] in right:
        return "right"
    if result.match == "partial" and honest_subset(matcher.attrs[result.best.index], wants_of(label["wants"])):
        return "honest_partial"
    return "wrong"


def candidate_ok(label: dict, cand, matcher) -> bool:
    """Whether a candidate (ignoring the none threshold) would be right or an honest partial."""
    right = label["right"].split()
    if right == ["-"]:
        return False
    if matcher.feeds[cand.index]["slug"] in right:
        return True
    return cand.kind == "partial" and honest_subset(matcher.attrs[cand.index], wants_of(label["wants"]))


def build_matcher(run: Path, embed: bool):
    from pinlanding.collections.layout import RunLayout
    from pinlanding.feeds.api import load_matcher
    from pinlanding.feeds.build import read_feeds
    from pinlanding.feeds.config import ServeConfig

    layout = RunLayout(run)
    matcher = load_matcher(layout, read_feeds(layout), ServeConfig(embed_words=embed))
    matcher.warm()
    return matcher


def fit(rows: list[dict], results: list, matcher) -> dict:
    """Fit the logistic confidence on the dev split (none below 0.5)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from pinlanding.feeds.matching import FEATURES

    xs, ys = [], []
    for label, res in zip(rows, results):
        if label["split"] == "dev" and res.candidates:
            c = res.candidates[0]
            xs.append([c.features[f] for f in FEATURES])
            ys.append(1 if candidate_ok(label, c, matcher) else 0)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(np.array(xs), np.array(ys))
    cal = {"intercept": round(float(model.intercept_[0]), 6),
           "coef": {f: round(float(w), 6) for f, w in zip(FEATURES, model.coef_[0])}}
    from pinlanding.feeds.matching import Calibration

    # none below 0.5: the API answers none when its best collection is more likely wrong than right
    probe = Calibration(cal["intercept"], cal["coef"], 0.5)
    ok = n = 0
    for label, res in zip(rows, results):
        if label["split"] != "dev":
            continue
        n += 1
        right = label["right"].split()
        none_ok = right == ["-"] or "NONE" in right
        c = res.candidates[0] if res.candidates else None
        ok += none_ok if c is None or probe(c.features) < probe.none_below else candidate_ok(label, c, matcher)
    cal["none_below"] = probe.none_below
    best = (ok / n, probe.none_below)
    cal["source"] = (f"logistic regression on the {len(ys)} dev-split queries with a candidate in "
                     f"evaluation/data/query_labels.tsv ({sum(ys)} acceptable); none below 0.5 (more likely wrong than "
                     f"right; dev accuracy {best[0]:.3f}); written by benchmarks/eval_query_mapping.py --fit")
    return cal


def reliability(pairs: list[tuple[float, int]], bins: int = 5) -> list[dict]:
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = [(p, y) for p, y in pairs if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if sel:
            out.append({"confidence": f"{lo:.1f}-{hi:.1f}", "queries": len(sel),
                        "mean_confidence": round(sum(p for p, _ in sel) / len(sel), 3),
                        "acceptable_share": round(sum(y for _, y in sel) / len(sel), 3)})
    return out


def evaluate(rows: list[dict], matcher) -> tuple[dict, list]:
    t0 = time.perf_counter()
    results = matcher.match_many([r["query"] for r in rows])
    seconds = time.perf_counter() - t0
    report: dict = {"seconds": round(seconds, 3), "calibration": matcher.calibration.source, "splits": {}}
    for split in ("dev", "test", "nonsense", "fashion12k"):
        sel = [(l, r) for l, r in zip(rows, results) if (l["split"] == split or
                                                          (split == "fashion12k" and l["split"] in ("dev", "test")))]
        if not sel:
            continue
        verdicts = [judge(l, r, matcher) for l, r in sel]
        n = len(sel)
        pairs = [(r.candidates[0].confidence, int(candidate_ok(l, r.candidates[0], matcher)))
                 for l, r in sel if r.candidates]
        brier = sum((p - y) ** 2 for p, y in pairs) / len(pairs) if pairs else None
        report["splits"][split] = {
            "queries": n,
            "right": verdicts.count("right"), "honest_partial": verdicts.count("honest_partial"),
            "wrong": verdicts.count("wrong"),
            "acceptable_share": round((verdicts.count("right") + verdicts.count("honest_partial")) / n, 4),
            "right_share": round(verdicts.count("right") / n, 4),
            "answers": {m: sum(1 for _, r in sel if r.match == m) for m in ("exact", "partial", "none")},
            "none_labels": sum(1 for l, _ in sel if l["right"] == "-"),
            "none_labels_answered_none": sum(1 for l, r in sel if l["right"] == "-" and r.match == "none"),
            "brier": round(brier, 4) if brier is not None else None,
            "reliability": reliability(pairs),
        }
    return report, results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "dev"))
    ap.add_argument("--labels", default=str(ROOT / "evaluation" / "data" / "query_labels.tsv"))
    ap.add_argument("--no-embed", action="store_true", help="parse only (no MiniLM for leftover words)")
    ap.add_argument("--fit", action="store_true", help="refit feeds/calibration.json on the dev split")
    ap.add_argument("--show", choices=["dev", "test", "all"], help="print each query's answer of this split")
    args = ap.parse_args(argv)
    rows = read_labels(Path(args.labels))
    matcher = build_matcher(Path(args.run), embed=not args.no_embed)
    report, results = evaluate(rows, matcher)
    if args.fit:
        from pinlanding.collections.artifacts import write_json
        from pinlanding.feeds.matching import CALIBRATION_PATH, Calibration

        cal = fit(rows, results, matcher)
        write_json(CALIBRATION_PATH, cal)
        matcher.calibration = Calibration.load(CALIBRATION_PATH)
        report, results = evaluate(rows, matcher)
        report["fitted"] = cal
    if args.show:
        for l, r in zip(rows, results):
            if args.show in ("all", l["split"]):
                top = matcher.feeds[r.best.index]["slug"] if r.best else (
                    f"({matcher.feeds[r.candidates[0].index]['slug']})" if r.candidates else "-")
                print(f"{l['id']:>3} {judge(l, r, matcher):14s} {r.match:7s} {r.confidence:.2f} {top:34s} "
                      f"| {l['query'][:70]} | right={l['right'][:60]} | unmet={r.best.unmet if r.best else ''} "
                      f"emb={ {w: e['value'] for w, e in r.parsed.embedded.items()} }", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT.parent))
    raise SystemExit(main())
