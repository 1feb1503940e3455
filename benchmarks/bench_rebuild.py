"""The rerun after one value rename, on a copy of a finished dev run, against that run's cold time
(target: <= 25% of it), and what it kept: the encoder (not retrained), untouched collections' feeds
(feeds.jsonl lines identical but for aliases, and no old alias lost) and slugs, the old slug of each renamed collection (an alias).

Usage: python benchmarks/bench_rebuild.py [RUN] [CATALOG]
  RUN: a finished run of the whole pipeline (default runs/head); it is copied to runs/bench-rebuild, never
  changed. Its manifest's stage times are the cold run. The renamed value is the kept value of ``color``
  (else of the first key) that the most published collections use.

Settling (not timed): the copy's catalogue is ingested and its vocabulary curated again by this code; if the
run's encoder covers that vocabulary,
the run's extraction, encoder and assignments are adopted as this code's (their manifest entries are
re-recorded; a run made by an older version would otherwise retrain), and topics, feeds, site and report
are rebuilt once, so that the timed rerun changes only what the rename changes. Timed: the run after the
rename, without ``ingest`` (the catalogue did not change); its cold time is added to the figure, since a
real run always re-reads the catalogue.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import yaml

from pinlanding.collections.artifacts import read_json, read_table, tree_digest, tree_digest_or_absent, write_json
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import STAGE_NAMES, Pipeline, get_stage
from pinlanding.collections.schemas import FEEDS
from pinlanding.collections.scoped import reuse_encoder
from pinlanding.vocab.decisions import Decision, DecisionStore, decisions_path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CATALOG = (ROOT / ".." / "shared" / "datasets" / "myntra").resolve()


def feed_lines(layout: RunLayout) -> dict[str, dict]:
    return {json.loads(line)["slug"]: json.loads(line) for line in layout.feeds_jsonl.read_text().splitlines()}


def without_aliases(feed: dict | None) -> dict | None:
    """A feed line but its aliases: a touched collection merged into an untouched one as a duplicate adds its new
    slug there, and the untouched collection's products, title and URL stay."""
    return None if feed is None else {k: v for k, v in feed.items() if k != "aliases"}


def adopt(pipeline: Pipeline, names: tuple[str, ...]) -> None:
    """Record the named stages' current outputs as what this code version made of their current inputs."""
    layout = pipeline.layout
    for name in names:
        stage = get_stage(name)
        digest = {n: tree_digest_or_absent(layout.root / n)
                  for n in stage.inputs + stage.outputs if n != "review"}
        pipeline.manifest["stages"][name].update(
            fingerprint=pipeline.fingerprint(stage), outputs={n: digest[n] for n in stage.outputs},
            inputs={n: digest[n] for n in stage.inputs if n != "review"},
            basis=pipeline.basis(stage) if stage.reuse else None)
    write_json(layout.manifest, pipeline.manifest)


def settle(layout: RunLayout, cfg: PipelineConfig, catalog: Path) -> None:
    """See the module docstring; exits when the run's encoder does not cover this code's vocabulary."""
    Pipeline(cfg, layout, catalog=catalog).run(["ingest", "vocab"])  # an older run's catalogue may lack columns
    train = get_stage("train")  # what the train stage records, as adopt() does
    encoder = {"inputs": {n: tree_digest_or_absent(layout.root / n) for n in train.inputs if n != "review"},
               "outputs": {"encoder": tree_digest(layout.root / "encoder")}}
    if reuse_encoder(cfg, layout, encoder) is None:
        sys.exit(f"{layout.root}: this code curates values the run's encoder never learned; use a run of this code")
    adopt(Pipeline(cfg, layout, catalog=catalog), ("ingest", "extract", "vocab", "train", "assign"))
    Pipeline(cfg, layout, catalog=catalog).run(["topics", "feeds", "site", "report"])


def main(source: Path, catalog: Path) -> None:
    out = ROOT / "runs" / "bench-rebuild"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns(".lock", ".spark-tmp"))
    layout = RunLayout(out)
    cfg = PipelineConfig.model_validate(yaml.safe_load((out / "config.yaml").read_text()))
    stages = read_json(layout.manifest)["stages"]
    cold, ingest = sum(e["seconds"] for e in stages.values()), stages["ingest"]["seconds"]
    settle(layout, cfg, catalog)
    feeds = read_table(layout.feeds, FEEDS).to_pylist()
    uses = Counter((a["key"], a["value"]) for f in feeds for a in f["attributes"])
    key = "color" if any(k == "color" for k, _ in uses) else sorted(uses)[0][0]
    (k, value), n = max(((kv, n) for kv, n in uses.items() if kv[0] == key), key=lambda x: (x[1], x[0]))
    before, encoder_before = feed_lines(layout), read_json(layout.manifest)["stages"]["train"]["outputs"]
    touched = {f["slug"] for f in feeds if any((a["key"], a["value"]) == (k, value) for a in f["attributes"])}
    DecisionStore(decisions_path(layout, cfg.vocab.decisions_path)).append(
        Decision(action="rename", who="bench", key=k, value=value, target=f"{value} Renamed"))
    started, start = datetime.now(timezone.utc).isoformat(), time.perf_counter()
    manifest = Pipeline(cfg, layout, catalog=catalog).run([n for n in STAGE_NAMES if n != "ingest"])
    rerun = time.perf_counter() - start + ingest
    after = feed_lines(layout)
    untouched = set(before) - touched
    differ = sorted(s for s in untouched if without_aliases(after.get(s)) != without_aliases(before[s]))
    same = len(untouched) - len(differ)
    realiased = sum(after.get(s, {}).get("aliases") != before[s]["aliases"] for s in untouched)
    lost = sorted(a for s in untouched for a in before[s]["aliases"] if a not in (after.get(s) or {}).get("aliases", []))
    changes = read_json(layout.dir("feeds") / "changes.json", default={}) or {}
    aliased = sum(s in changes.get("aliased", {}) for s in touched)
    print(f"\nrename {k}={value!r} (in {n} published collections) on a copy of {source}")
    for name in STAGE_NAMES[1:]:
        entry = manifest["stages"][name]
        fresh = entry.get("finished_at", "") >= started
        print(f"  {name:<8} {entry['seconds'] if fresh else 0.0:8.1f} s  "
              f"{(entry.get('counts') or {}).get('reused', '') if fresh else 'unchanged, reused'}")
    print(f"  rerun {rerun:.1f} s (ingest's {ingest:.1f} s included) vs cold {cold:.1f} s: "
          f"{100 * rerun / cold:.1f}% (target <= 25%)")
    print(f"  encoder reused: {manifest['stages']['train']['outputs'] == encoder_before}")
    print(f"  untouched collections identical (products, title, every field but aliases): {same} of {len(untouched)}; "
          f"still at their slug: {sum(s in after for s in untouched)}" + (f"; differing: {', '.join(differ[:5])}" if differ else ""))
    print(f"  untouched collections whose aliases changed (a renamed duplicate merged into them): {realiased}; "
          f"their old aliases lost: {len(lost)}" + (f" ({', '.join(lost[:5])})" if lost else ""))
    print(f"  renamed collections whose old slug is an alias: {aliased} of {len(touched)}; "
          f"tombstones: {len(changes.get('gone', []))}"
          + (f" ({', '.join(changes['gone'][:5])}: collections the rerun no longer publishes)" if changes.get("gone") else ""))


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]) if args else ROOT / "runs" / "head", Path(args[1]) if len(args) > 1 else DEFAULT_CATALOG)
