"""Run orchestration: the ordered stages, their fingerprints, skipping unchanged work, the manifest.

A stage is a function of its config sections and a typed inputs object that returns its counts for the
manifest (:mod:`pinlanding.collections.stage_inputs`); it reads the folders and files its inputs type
declares and writes its output folders under the run root with atomic writes. A stage is skipped when
its fingerprint (package version, code, its config sections, digests of everything its inputs type
lists) matches the one recorded in ``manifest.json`` and its outputs are still what that run left. A
stage that died halfway has no manifest entry, so it simply runs again; per-item caches inside the
stages make that rerun cheap. One run at a time per folder: :class:`RunLock`.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml
from rich.console import Console

from pinlanding import __version__
from pinlanding.collections.artifacts import (as_path, is_remote, json_digest, read_json, tree_digest_or_absent,
                                              write_json, write_text)
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.engines import ray_session
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.stage_inputs import StageSignature, catalog_digest, signature

console = Console(stderr=True)
R = TypeVar("R")


@dataclass(frozen=True)
class Stage:
    """A stage of the pipeline: its function, and when to reuse its outputs instead of running it. What it
    reads, writes and is configured by comes from the function's signature (:attr:`signature`)."""

    name: str
    target: str  # "module:function"
    description: str = ""
    always_run: bool = False  # cheap stages whose inputs live outside the run (the catalogue) always rerun
    reuse: str = ""  # "module:function" that may stand in for a rerun (returns counts, or None to run the stage)

    def load(self) -> Callable[..., dict[str, Any]]:
        return _load(self.target)

    @property
    def signature(self) -> StageSignature:
        return signature(self.load())

    @property
    def inputs(self) -> tuple[str, ...]:
        """The run folders it reads (``review``: the decisions)."""
        return self.signature.inputs.folders()

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.signature.inputs.outputs

    @property
    def sections(self) -> tuple[str, ...]:
        """The config sections that change its result."""
        return self.signature.fingerprinted


STAGES: tuple[Stage, ...] = (
    # ingest reruns every time (about 10 s per 30k products): images may live anywhere, and its output is
    # byte-identical when nothing changed, so the stages after it are still reused.
    Stage("ingest", "pinlanding.collections.ingest:run_ingest",
          "read and normalize the catalogue, quarantine bad records", always_run=True),
    Stage("extract", "pinlanding.vocab.extract:run_extract", "extract key-value attributes per product"),
    Stage("vocab", "pinlanding.vocab.curate:run_vocab",
          "curate the vocabulary (frequency, clustering, review decisions)"),
    # a vocabulary change that only rejects, renames or merges values keeps the encoder and maps the assignments
    Stage("train", "pinlanding.encoders.train:run_train", "train and calibrate the dual encoder",
          reuse="pinlanding.collections.scoped:reuse_encoder"),
    Stage("assign", "pinlanding.encoders.assign:run_assign", "assign vocabulary attributes catalogue-wide",
          reuse="pinlanding.collections.scoped:map_assignments"),
    Stage("topics", "pinlanding.vocab.topics:run_topics", "generate candidate topics and judge them"),
    Stage("feeds", "pinlanding.feeds.build:run_feeds", "score topics against products with Spark"),
    Stage("site", "pinlanding.feeds.site:run_site", "render the landing pages"),
    Stage("report", "pinlanding.evaluation.report:run_report", "attribute statistics and search-demand coverage"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ValueError(f"unknown stage '{name}'; known: {list(STAGE_NAMES)}")


@lru_cache(maxsize=None)
def code_digest(entry: str) -> str:
    """Digest of the source files (code, templates, static files) of the package that holds a stage's
    entry point, so that changing a stage's code reruns it even where its settings did not change."""
    folder = Path(importlib.util.find_spec(entry.split(":")[0]).origin).parent  # found, not imported
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix in (".py", ".html", ".css", ".js", ".yaml", ".json", ".txt"))
    return json_digest([(str(p.relative_to(folder)), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files])


def call_stage(fn: Callable[..., R], cfg: PipelineConfig, layout: RunLayout, catalog: Path | None = None,
               **extra: Any) -> R:
    """Call a stage function on a run folder: its config sections from ``cfg``, its inputs object built over
    ``layout`` (``catalog``: the input catalogue, for ingest). Tests and benchmarks call stages this way too."""
    return fn(**signature(fn).arguments(cfg, layout, catalog), **extra)


def resolved_config(cfg: PipelineConfig) -> dict[str, Any]:
    """Every value a run uses, as JSON-able data: the config with the encoder preset's values filled in."""
    enc = cfg.encoder
    tree = cfg.model_dump(mode="json")
    tree["encoder"] = enc.model_copy(update={k: enc.resolved(k) for k in enc.resolved_dict()}).model_dump(mode="json")
    return tree


class RunLocked(RuntimeError):
    """Another live process holds the run folder."""


class RunLock:
    """One run at a time per run folder: an exclusive ``flock`` on ``RUN/.lock``, which names its holder.

    The kernel drops the lock when its process dies (killed or not), so a lock left by a dead run is simply
    taken over; a live holder makes a second run fail at once, naming its pid, host and start time.
    Object-store run folders have no file locks: there the caller must not start two runs.
    """

    def __init__(self, root: Any) -> None:
        self.root = as_path(root)
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        if is_remote(self.root):
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            try:
                info = json.loads(holder)
                who = f"pid {info['pid']} on {info['host']}, started {info['started_at']}"
            except (ValueError, KeyError, TypeError):
                who = "another process"
            raise RunLocked(f"run folder {self.root} is in use by {who}; wait for it to finish or use "
                            "another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started_at": datetime.now(timezone.utc).isoformat()}).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def spark_scratch(root: Any, cfg: PipelineConfig) -> None:
    """Point a local Spark's scratch folders (``spark-*``, ``blockmgr-*``, the JVM's temp folder) into
    ``RUN/.spark-tmp``, emptied here: what a killed JVM left is removed by the next run (under
    :class:`RunLock`, no other run is using it)."""
    if is_remote(root) or not cfg.spark.master.startswith("local") or "spark.local.dir" in cfg.spark.conf:
        return
    pyspark = sys.modules.get("pyspark")
    if pyspark is not None and pyspark.SparkContext._active_spark_context is not None:
        return  # a session of this process is running (an earlier run here): its scratch is in use
    scratch = as_path(root) / ".spark-tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    os.environ["SPARK_LOCAL_DIRS"] = str(scratch.resolve())  # the JVM reads it when a session starts
    # and spark-submit's own temp folders (java.io.tmpdir), left behind when its JVM is killed
    opts = re.sub(r"-Djava\.io\.tmpdir=\S+", "", os.environ.get("SPARK_SUBMIT_OPTS", "")).strip()
    os.environ["SPARK_SUBMIT_OPTS"] = f"{opts} -Djava.io.tmpdir={scratch.resolve()}".strip()


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
        return json_digest(self._fingerprint_parts(stage))

    def basis(self, stage: Stage) -> str:
        """The fingerprint without the input folders (code, settings, external files): a ``reuse`` hook may
        stand in for a rerun only while this is unchanged."""
        return _basis(self._fingerprint_parts(stage))

    def _fingerprint_parts(self, stage: Stage) -> dict[str, Any]:
        """Everything the fingerprint covers; ``inputs``: the digests of the run folders (and decisions) read."""
        inputs = stage.signature.inputs.build(self.cfg, self.layout, self.catalog)
        return {
            "version": __version__,
            "code": code_digest(stage.target),
            "config": {s: getattr(self.cfg, s).model_dump(mode="json") for s in stage.sections},
            "inputs": {},
            **inputs.digests(),
        }

    def _save(self) -> None:
        self.manifest.update(
            package_version=__version__,
            config=self.cfg.model_dump(mode="json"),
            updated_at=datetime.now(timezone.utc).isoformat(),
        )
        if self.catalog is not None:
            self.manifest["inputs"] = {"catalog": str(self.catalog), "catalog_digest": catalog_digest(self.catalog)}
        write_json(self.layout.manifest, self.manifest)
        write_text(self.layout.root / "config.yaml", yaml.safe_dump(resolved_config(self.cfg), sort_keys=False))

    def run_stage(self, stage: Stage) -> dict[str, Any]:
        """Run one stage unless its recorded fingerprint and outputs are unchanged."""
        parts = self._fingerprint_parts(stage)
        fp = json_digest(parts)
        previous = self.manifest["stages"].get(stage.name, {})
        outputs_now = {name: tree_digest_or_absent(self.layout.root / name) for name in stage.outputs}
        unchanged = previous.get("fingerprint") == fp and previous.get("outputs") == outputs_now
        inputs_now = {name: digest for name, digest in parts["inputs"].items() if name != "review"}
        basis = _basis(parts) if stage.reuse else None
        if unchanged and not (self.force or stage.always_run):
            console.print(f"[dim]= {stage.name}: unchanged, reusing {', '.join(stage.outputs)}[/]")
            previous.update(inputs=inputs_now, basis=basis)  # what a reuse hook compares against next time
            return previous
        console.print(f"[bold cyan]> {stage.name}[/]: {stage.description}")
        self.manifest["stages"].pop(stage.name, None)
        start = time.perf_counter()
        hook = stage.reuse and previous.get("basis") == basis and not self.force
        reused = _load(stage.reuse)(self.cfg, self.layout, previous) if hook else None
        counts = reused if reused is not None else call_stage(stage.load(), self.cfg, self.layout, self.catalog)
        entry = {
            "fingerprint": fp,
            "outputs": {name: tree_digest_or_absent(self.layout.root / name) for name in stage.outputs},
            "inputs": inputs_now,
            "basis": basis,
            "seconds": round(time.perf_counter() - start, 3),
            "counts": counts,
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }
        self.manifest["stages"][stage.name] = entry
        self._save()
        note = f" [yellow]{counts['reused']}[/]" if reused is not None else ""
        console.print(f"[green]  {stage.name} done[/] in {entry['seconds']:.1f}s {_short(counts)}{note}")
        return entry

    def run(self, names: list[str] | None = None) -> dict[str, Any]:
        """Run the named stages (default: every stage), in pipeline order."""
        known = [s.name for s in self.stages]
        wanted = set(names or known)
        if wanted - set(known):
            raise ValueError(f"unknown stages {sorted(wanted - set(known))}; known: {known}")
        with ExitStack() as stack:
            stack.enter_context(RunLock(self.layout.root))
            spark_scratch(self.layout.root, self.cfg)
            if self.cfg.ray.address:  # on a cluster: one connection (and one node check) for the run, not per stage
                stack.enter_context(ray_session(self.cfg.ray))
            for stage in self.stages:
                if stage.name not in wanted:
                    continue
                self.run_stage(stage)
        self._save()
        return self.manifest


def _basis(parts: dict[str, Any]) -> str:
    return json_digest({k: v for k, v in parts.items() if k != "inputs"})


def _load(target: str) -> Callable[..., Any]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _short(counts: dict[str, Any]) -> str:
    items = [f"{k}={v}" for k, v in counts.items() if isinstance(v, (int, float, str))][:6]
    return "(" + ", ".join(items) + ")" if items else ""
