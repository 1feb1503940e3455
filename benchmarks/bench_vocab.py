"""Vocabulary curation and topics figures on a run with raw attributes (catalog/ and attributes/ done).

    python benchmarks/bench_vocab.py --run runs/dev
    python benchmarks/bench_vocab.py --run runs/dev --set vocab.judge.keep_threshold=0.6

Copies the run's catalogue and raw attributes into a scratch run, then times the vocab and topics
stages cold (no embedding or judge cache: the first run on a catalogue) and warm (caches filled, as
when a merchandiser's decisions trigger a rerun), and prints the curation report's raw-vs-curated
figures. Budget on the 30.7k-product catalogue with 2 cores: vocab + topics <= 3 minutes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from pinlanding.collections.artifacts import read_json
from pinlanding.collections.config import load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.vocab.curate import run_vocab
from pinlanding.vocab.topics import run_topics


def _timed(fn, cfg, layout) -> tuple[float, dict]:
    start = time.perf_counter()
    counts = call_stage(fn, cfg, layout)
    return time.perf_counter() - start, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/dev"), help="run folder with catalog/ and attributes/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    args = parser.parse_args()
    source = RunLayout(args.run)
    for needed in (source.products, source.attributes):
        if not needed.exists():
            raise SystemExit(f"{needed} is missing: run `pinlanding run` (ingest + extract) on {args.run} first")
    cfg = load_config(None, args.overrides)
    with tempfile.TemporaryDirectory(prefix="bench-vocab-") as tmp:
        layout = RunLayout(Path(tmp) / "run")
        shutil.copytree(args.run / "catalog", layout.root / "catalog")
        layout.dir("attributes")
        (shutil.copytree if source.attributes.is_dir() else shutil.copy2)(source.attributes, layout.attributes)
        figures = {}
        for phase in ("cold", "warm"):
            t_vocab, vocab_counts = _timed(run_vocab, cfg, layout)
            t_topics, topic_counts = _timed(run_topics, cfg, layout)
            figures[phase] = {"vocab_s": round(t_vocab, 2), "topics_s": round(t_topics, 2),
                              "total_s": round(t_vocab + t_topics, 2)}
        report = read_json(layout.dir("vocabulary") / "report.json")
        topics = read_json(layout.dir("topics") / "report.json")
    raw, cur = report["raw"], report["curated"]
    print(f"products: {report['n_products']}  frequency floor: {report['threshold']} products")
    print(f"{'':34}{'raw':>12}{'curated':>12}")
    for label, key in (("distinct values", "distinct_values"), ("mean attributes per product", "mean_attributes_per_product"),
                       ("share of values on < 10 products", "share_values_under_10_products"),
                       ("products with attributes", "products_with_attributes")):
        print(f"{label:34}{raw[key]:>12}{cur[key]:>12}")
    print("distinct values per key:", json.dumps({k: [raw["distinct_values_per_key"].get(k, 0), v]
                                                   for k, v in sorted(cur["distinct_values_per_key"].items())}))
    print(f"clusters merged: {report['clusters_merged']}  merges by method: {report['merges_by_method']}")
    print(f"dropped: {json.dumps(report['dropped'], sort_keys=True)}")
    print(f"topics: {topics['candidates']} candidates, {topics['kept']} kept, {topics['rejected']} rejected "
          f"{json.dumps(topics['rejected_by'], sort_keys=True)} (judge: {topics['judge']})")
    print(f"timing cold: {figures['cold']}  warm: {figures['warm']}  (warm judge cache hits: "
          f"{topic_counts['judge_cache_hits']})")
    print(f"budget 180 s for vocab + topics: cold {'OK' if figures['cold']['total_s'] <= 180 else 'OVER'}")


if __name__ == "__main__":
    main()
