"""Run orchestration: the ordered stages, their fingerprints, skipping unchanged work, the manifest.

A stage is a function ``run_x(ctx: StageContext) -> dict`` (counts for the manifest) that reads
its input folders and writes its output folders under the run root with atomic writes. A stage is
skipped when its fingerprint (package version, its config sections, digests of its inputs) matches
the one recorded in ``manifest.json`` and its outputs are still what that run left. A stage that
died halfway has no manifest entry, so it simply runs again; per-item caches inside the stages make
that rerun cheap.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml
from rich.console import Console

from pinlanding import __version__
from pinlanding.collections.artifacts import json_digest, read_json, tree_digest, write_json, write_text
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.engines import ray_session
from pinlanding.collections.layout import RunLayout

console = Console(stderr=True)


@dataclass(frozen=True)
class StageContext:
    """What a stage function receives."""

    cfg: PipelineConfig
    layout: RunLayout
    catalog: Path | None = None  # the input catalogue (ingest reads it; nothing else should)


@dataclass(frozen=True)
class Stage:
    name: str
    target: str  # "module:function"
    inputs: tuple[str, ...]  # artifact folders read
    outputs: tuple[str, ...]  # artifact folders written
    sections: tuple[str, ...]  # config sections that change its result
    description: str = ""
    always_run: bool = False  # cheap stages whose inputs live outside the run (the catalogue) always rerun

    def available(self) -> bool:
        """Whether the module implementing this stage exists in this installation."""
        return importlib.util.find_spec(self.target.split(":")[0]) is not None

    def load(self) -> Callable[[StageContext], dict[str, Any]]:
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


STAGES: tuple[Stage, ...] = (
    # ingest reruns every time (about 10 s per 30k products): images may live anywhere, and its output is
    # byte-identical when nothing changed, so the stages after it are still reused.
    Stage("ingest", "pinlanding.collections.ingest:run_ingest", (), ("catalog",), ("catalog",),
          "read and normalize the catalogue, quarantine bad records", always_run=True),
    Stage("extract", "pinlanding.vocab.extract:run_extract", ("catalog",), ("attributes",), ("extract", "ray"),
          "extract key-value attributes per product"),
    Stage("vocab", "pinlanding.vocab.curate:run_vocab", ("catalog", "attributes", "review"), ("vocabulary",),
          ("vocab",), "curate the vocabulary (frequency, clustering, review decisions)"),
    Stage("topics", "pinlanding.vocab.topics:run_topics", ("catalog", "vocabulary", "review"), ("topics",),
          ("vocab", "feeds"), "generate candidate topics and judge them"),  # support uses the feeds' filter
    Stage("train", "pinlanding.encoders.train:run_train", ("catalog", "vocabulary"), ("encoder",),
          ("encoder", "run"), "train and calibrate the dual encoder"),
    Stage("assign", "pinlanding.encoders.assign:run_assign", ("catalog", "vocabulary", "encoder"), ("assignments",),
          ("assign", "ray"), "assign vocabulary attributes catalogue-wide"),
    Stage("feeds", "pinlanding.feeds.build:run_feeds", ("catalog", "topics", "assignments"), ("feeds",),
          ("feeds", "spark"), "score topics against products with Spark"),
    Stage("site", "pinlanding.feeds.site:run_site", ("catalog", "feeds", "assignments"), ("site",), ("site", "feeds"),
          "render the landing pages"),  # assignments + feeds settings: how many products match each collection
    Stage("report", "pinlanding.evaluation.report:run_report",
          ("catalog", "attributes", "vocabulary", "topics", "assignments", "feeds"), ("report",), ("evaluation",),
          "attribute statistics and search-demand coverage"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ValueError(f"unknown stage '{name}'; known: {list(STAGE_NAMES)}")


def catalog_digest(path: Path) -> str:
    """A cheap fingerprint of the input catalogue: names, sizes and modification times of its files."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return json_digest([(str(p.relative_to(path)) if p != path else p.name, p.stat().st_size, p.stat().st_mtime_ns)
                        for p in files])


@lru_cache(maxsize=None)
def code_digest(entry: str) -> str:
    """Digest of the source files (code, templates, static files) of the package that holds a stage's
    entry point, so that changing a stage's code reruns it even where its settings did not change."""
    folder = Path(importlib.util.find_spec(entry.split(":")[0]).origin).parent  # found, not imported
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix in (".py", ".html", ".css", ".js", ".yaml", ".json", ".txt"))
    return json_digest([(str(p.relative_to(folder)), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files])


def _folder_digest(layout: RunLayout, name: str) -> str:
    path = layout.root / name
    return tree_digest(path) if path.exists() else "absent"


@dataclass
class Pipeline:
    """Runs stages in order against one run folder, recording everything in ``manifest.json``."""

    cfg: PipelineConfig
    layout: RunLayout
    catalog: Path | None = None
    force: bool = False
    stages: tuple[Stage, ...] = STAGES
    manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.manifest = read_json(self.layout.manifest, default={}) or {}
        self.manifest.setdefault("stages", {})

    def fingerprint(self, stage: Stage) -> str:
        parts: dict[str, Any] = {
            "version": __version__,
            "code": code_digest(stage.target),
            "config": {s: getattr(self.cfg, s).model_dump(mode="json") for s in stage.sections},
            "inputs": {name: _folder_digest(self.layout, name) for name in stage.inputs},
        }
        if stage.name == "ingest":
            if self.catalog is None:
                raise ValueError("the ingest stage needs --catalog PATH")
            parts["catalog"] = catalog_digest(self.catalog)
        return json_digest(parts)

    def _save(self) -> None:
        self.manifest.update(
            package_version=__version__,
            config=self.cfg.model_dump(mode="json"),
            updated_at=datetime.now(timezone.utc).isoformat(),
        )
        if self.catalog is not None:
            self.manifest["inputs"] = {"catalog": str(self.catalog), "catalog_digest": catalog_digest(self.catalog)}
        write_json(self.layout.manifest, self.manifest)
        write_text(self.layout.root / "config.yaml", yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False))

    def run_stage(self, stage: Stage) -> dict[str, Any]:
        """Run one stage unless its recorded fingerprint and outputs are unchanged."""
        fp = self.fingerprint(stage)
        previous = self.manifest["stages"].get(stage.name, {})
        outputs_now = {name: _folder_digest(self.layout, name) for name in stage.outputs}
        unchanged = previous.get("fingerprint") == fp and previous.get("outputs") == outputs_now
        if unchanged and not (self.force or stage.always_run):
            console.print(f"[dim]= {stage.name}: unchanged, reusing {', '.join(stage.outputs)}[/]")
            return previous
        console.print(f"[bold cyan]> {stage.name}[/]: {stage.description}")
        self.manifest["stages"].pop(stage.name, None)
        start = time.perf_counter()
        counts = stage.load()(StageContext(self.cfg, self.layout, self.catalog)) or {}
        entry = {
            "fingerprint": fp,
            "outputs": {name: _folder_digest(self.layout, name) for name in stage.outputs},
            "seconds": round(time.perf_counter() - start, 3),
            "counts": counts,
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }
        self.manifest["stages"][stage.name] = entry
        self._save()
        console.print(f"[green]  {stage.name} done[/] in {entry['seconds']:.1f}s {_short(counts)}")
        return entry

    def run(self, names: list[str] | None = None) -> dict[str, Any]:
        """Run the named stages (default: every stage that exists), in pipeline order."""
        wanted = set(names or [s.name for s in self.stages])
        with ExitStack() as stack:
            if self.cfg.ray.address:  # on a cluster: one connection (and one node check) for the run, not per stage
                stack.enter_context(ray_session(self.cfg.ray))
            for stage in self.stages:
                if stage.name not in wanted:
                    continue
                if not stage.available():
                    console.print(f"[yellow]- {stage.name}: not implemented in this version, skipped[/]")
                    continue
                self.run_stage(stage)
        self._save()
        return self.manifest


def _short(counts: dict[str, Any]) -> str:
    items = [f"{k}={v}" for k, v in counts.items() if isinstance(v, (int, float, str))][:6]
    return "(" + ", ".join(items) + ")" if items else ""
