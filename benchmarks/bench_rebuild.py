"""The rerun after one value rename, on a copy of a finished dev run, against that run's cold time
(target: <= 25% of it), and what it kept: the encoder (not retrained), untouched collections' feeds
(byte-identical lines of feeds.jsonl) and slugs, the old slug of each renamed collection (an alias).

Usage: python benchmarks/bench_rebuild.py [RUN] [CATALOG]
  RUN: a finished run of the whole pipeline (default runs/head); it is copied to runs/bench-rebuild, never
  changed. Its manifest's stage times are the cold run. The renamed value is the kept value of ``color``
  (else of the first key) that the most published collections use.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from pinlanding.collections.artifacts import read_json, read_table
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import Pipeline
from pinlanding.collections.schemas import FEEDS
from pinlanding.vocab.decisions import Decision, DecisionStore, decisions_path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CATALOG = (ROOT / ".." / "shared" / "datasets" / "myntra").resolve()


def feed_lines(layout: RunLayout) -> dict[str, str]:
    return {json.loads(line)["slug"]: line for line in layout.feeds_jsonl.read_text().splitlines()}


def main(source: Path, catalog: Path) -> None:
    out = ROOT / "runs" / "bench-rebuild"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns(".lock", ".spark-tmp"))
    layout = RunLayout(out)
    cfg = PipelineConfig.model_validate(yaml.safe_load((out / "config.yaml").read_text()))
    cold = sum(e["seconds"] for e in read_json(layout.manifest)["stages"].values())
    # settle: the stages this code version changed rerun once (not timed), so the timed rerun is the decision's
    Pipeline(cfg, layout, catalog=catalog).run()
    feeds = read_table(layout.feeds, FEEDS).to_pylist()
    uses = Counter((a["key"], a["value"]) for f in feeds for a in f["attributes"])
    key = "color" if any(k == "color" for k, _ in uses) else sorted(uses)[0][0]
    (k, value), n = max(((kv, n) for kv, n in uses.items() if kv[0] == key), key=lambda x: (x[1], x[0]))
    before, encoder_before = feed_lines(layout), read_json(layout.manifest)["stages"]["train"]["outputs"]
    touched = {f["slug"] for f in feeds if any((a["key"], a["value"]) == (k, value) for a in f["attributes"])}
    DecisionStore(decisions_path(layout, cfg.vocab.decisions_path)).append(
        Decision(action="rename", who="bench", key=k, value=value, target=f"{value} Renamed"))
    start = time.perf_counter()
    manifest = Pipeline(cfg, layout, catalog=catalog).run()
    rerun = time.perf_counter() - start
    after = feed_lines(layout)
    untouched = set(before) - touched
    same = sum(after.get(s) == before[s] for s in untouched)
    changes = read_json(layout.dir("feeds") / "changes.json", default={}) or {}
    aliased = sum(s in changes.get("aliased", {}) for s in touched)
    print(f"\nrename {k}={value!r} (in {n} published collections) on a copy of {source}")
    for name, entry in manifest["stages"].items():
        print(f"  {name:<8} {entry['seconds']:8.1f} s  {entry.get('counts', {}).get('reused', '')}")
    print(f"  rerun {rerun:.1f} s vs cold {cold:.1f} s: {100 * rerun / cold:.1f}% (target <= 25%)")
    print(f"  encoder reused: {manifest['stages']['train']['outputs'] == encoder_before}")
    print(f"  untouched collections byte-identical: {same} of {len(untouched)}; still at their slug: "
          f"{sum(s in after for s in untouched)}")
    print(f"  renamed collections whose old slug is an alias: {aliased} of {len(touched)}; "
          f"tombstones: {len(changes.get('gone', []))}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]) if args else ROOT / "runs" / "head", Path(args[1]) if len(args) > 1 else DEFAULT_CATALOG)
