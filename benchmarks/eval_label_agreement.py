"""How much of the collections' P@10 loss is on labels that contradict the product's own title.

Usage: python benchmarks/eval_label_agreement.py RUN_DIR [LABELS_DIR] [--families color,material,pattern]
(after `pinlanding evaluate --run RUN_DIR`, whose RUN_DIR/report/collections.jsonl says which collections it judged)

A product counts against a collection when the labels judge one of its attributes wrong. This prints P@10
as `pinlanding evaluate` condenses it (the first 10 products the labels judge on every attribute), and the
same figure when a wrong verdict is set aside because the product's title names the collection's value (for
material also "100% X" or "pure X" in the description): the merchant's title and the merchant's label disagree
there, and no run can follow both. Category matching is by words, so "shirt" is found in "T-shirt"; pass
``--families`` to leave it out. Analysis only: it reads the labels, and nothing in the pipeline does.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from pinlanding.evaluation.labels import read_fields, read_labels

ROOT = Path(__file__).resolve().parents[1]
TAG = re.compile(r"<[^>]+>")


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z]+", text.lower())}


def _texts(labels_dir: Path) -> dict[str, tuple[set[str], str]]:
    """product id -> (title words, description text) from the catalogue records."""
    fields = read_fields(labels_dir, ("productDisplayName", "descriptors"))
    return {pid: (_words(f.get("productDisplayName", "")), TAG.sub(" ", f.get("descriptors", "")).lower())
            for pid, f in fields.items()}


def _title_names(text: tuple[set[str], str], key: str, value: str) -> bool:
    title, description = text
    if _words(value) <= title:
        return True
    return key == "material" and re.search(rf"(100\s*%|pure)\s*{re.escape(value.lower())}", description) is not None


def main(run: Path, labels_dir: Path, families: set[str] | None, k: int = 10) -> None:
    judged_file = run / "report" / "collections.jsonl"
    if not judged_file.exists():
        raise SystemExit(f"{judged_file} is missing: run `pinlanding evaluate --run {run}` first")
    with judged_file.open() as f:
        judged_slugs = {r["slug"] for r in map(json.loads, f) if r["judged"]}
    labels = read_labels(labels_dir)
    texts = _texts(labels_dir)
    wrong, named = Counter(), Counter()
    p_all, p_set_aside, n = 0.0, 0.0, 0
    for feed in pq.read_table(run / "feeds" / "feeds.parquet", columns=["slug", "attributes", "products"]).to_pylist():
        if feed["slug"] not in judged_slugs:
            continue
        attrs = [(a["key"], a["value"]) for a in feed["attributes"]]
        hits = hits_set_aside = judged = 0
        for product in feed["products"]:
            pid = product["product_id"]
            verdicts = [(key, value, labels.judge_row(pid, key, value)) for key, value in attrs]
            if any(v is None for _, _, v in verdicts):
                continue  # condensed, as the judge: only products labelled on every attribute
            judged += 1
            hits += all(v for _, _, v in verdicts)
            hits_set_aside += all(v or ((families is None or key in families) and _title_names(texts[pid], key, value))
                                  for key, value, v in verdicts)
            for key, value, v in verdicts:
                if not v:
                    wrong[key] += 1
                    named[key] += _title_names(texts[pid], key, value)
            if judged == k:
                break
        if judged:
            n += 1
            p_all += hits / judged
            p_set_aside += hits_set_aside / judged
    print(f"judged collections {n}: P@{k} {p_all / n:.4f}; with labels that contradict the title set aside "
          f"({'all families' if families is None else ', '.join(sorted(families))}) {p_set_aside / n:.4f}")
    for key, count in wrong.most_common():
        print(f"  {key:10s} wrong verdicts in the first {k}: {count:5d}, the product's title names the value in "
              f"{named[key]:5d}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("labels", type=Path, nargs="?", default=ROOT.parent / "shared" / "datasets" / "myntra")
    ap.add_argument("--families", default=None, help="comma list of the keys whose verdicts may be set aside")
    args = ap.parse_args()
    main(args.run, args.labels, set(args.families.split(",")) if args.families else None)
