"""The run's artifacts as the review pages need them, reloaded when a file changes."""
from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pinlanding.collections.artifacts import read_table
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import part_names, read_part
from pinlanding.collections.schemas import ATTRIBUTES, PRODUCTS, TOPICS, VOCAB, VOCAB_DROPPED, VOCAB_MERGES
from pinlanding.vocab.workbench import Outcome, feed_outcomes


def run_settings(layout: RunLayout) -> tuple[str | None, int]:
    """``vocab.decisions_path`` and ``vocab.sample_images`` from the run's resolved config, if any."""
    try:
        cfg = yaml.safe_load((layout.root / "config.yaml").read_text()) or {}
        vocab = cfg.get("vocab") or {}
        return vocab.get("decisions_path"), int(vocab.get("sample_images", 4))
    except (OSError, yaml.YAMLError, ValueError, AttributeError):
        return None, 4


@dataclass
class ReviewData:
    """The run's artifacts as the pages need them, reloaded when a file changes."""

    layout: RunLayout
    samples: int = 4
    _stamp: tuple = ()
    values: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    variants: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    rejected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    images: dict[str, tuple[str, str]] = field(default_factory=dict)  # product_id -> (image_path, title), whole catalogue
    topics: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # topic_id -> what the last feeds run made of it
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _files(self) -> list[Path]:
        folder = self.layout.root / "vocabulary"
        return [self.layout.root / "catalog" / "products.parquet", folder / "vocabulary.parquet",
                folder / "merges.parquet", folder / "dropped.parquet", folder / "attributes.parquet",
                self.layout.root / "topics" / "topics.parquet", self.layout.feeds,
                self.layout.dir("feeds") / "dropped.parquet"]

    def refresh(self) -> "ReviewData":
        """Reload everything if any artifact changed; one thread at a time, and readers see whole snapshots."""
        with self._lock:
            stamp = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in self._files())
            if stamp != self._stamp:
                self._load()
                self._stamp = stamp
        return self

    def _load(self) -> None:
        products, vocab_file, merges_file, dropped_file, curated_file, topics_file = self._files()[:6]
        if not vocab_file.exists():
            raise FileNotFoundError(f"{vocab_file} does not exist; run `pinlanding stage vocab --out {self.layout.root}`")
        values: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in read_table(vocab_file, VOCAB).to_pylist():
            values[row["key"]].append(row)
        variants: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        if merges_file.exists():
            for m in read_table(merges_file, VOCAB_MERGES).to_pylist():
                variants[(m["key"], m["canonical"])].append(m)
        rejected: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if dropped_file.exists():
            for d in read_table(dropped_file, VOCAB_DROPPED).to_pylist():
                if d["reason"] == "rejected":
                    rejected[d["key"]].append(d)
        examples: dict[tuple[str, str], list[str]] = defaultdict(list)
        images: dict[str, tuple[str, str]] = {}
        for name in part_names(curated_file) if curated_file.exists() else []:  # co-partitioned: one part at a time
            table = read_part(products, name, PRODUCTS, ["product_id", "image_path", "title"]).to_pydict()
            part_images = {pid: (path or "", title or "") for pid, path, title in
                           zip(table["product_id"], table["image_path"], table["title"])}
            images.update(part_images)
            cur = read_part(curated_file, name, ATTRIBUTES, ["product_id", "key", "value"]).to_pydict()
            for pid, key, value in zip(cur["product_id"], cur["key"], cur["value"]):
                bucket = examples[(key, value)]
                if len(bucket) < self.samples and pid in part_images and part_images[pid][0]:
                    bucket.append(pid)
        topics = read_table(topics_file, TOPICS).to_pylist() if topics_file.exists() else []
        self.images, self.values, self.variants, self.rejected, self.examples, self.topics = (
            images, values, variants, rejected, examples, topics)
        self.outcomes = feed_outcomes(self.layout)
