"""The on-disk layout of a run: one folder per stage under the run folder, plus ``manifest.json``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STAGE_DIRS = ("catalog", "attributes", "vocabulary", "topics", "encoder", "assignments", "feeds", "site", "report")


@dataclass(frozen=True)
class RunLayout:
    """Paths of every artifact of a run rooted at ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def dir(self, name: str) -> Path:
        """The folder of one stage's artifacts (created on demand)."""
        if name not in STAGE_DIRS:
            raise ValueError(f"unknown artifact folder '{name}'; known: {list(STAGE_DIRS)}")
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def products(self) -> Path:
        return self.dir("catalog") / "products.parquet"

    @property
    def quarantine(self) -> Path:
        return self.dir("catalog") / "quarantine.parquet"

    @property
    def attributes(self) -> Path:
        """Raw extracted attributes."""
        return self.dir("attributes") / "attributes.parquet"

    @property
    def curated_attributes(self) -> Path:
        """Extracted attributes mapped onto the curated vocabulary."""
        return self.dir("vocabulary") / "attributes.parquet"

    @property
    def vocabulary(self) -> Path:
        return self.dir("vocabulary") / "vocabulary.parquet"

    @property
    def topics(self) -> Path:
        return self.dir("topics") / "topics.parquet"

    @property
    def assignments(self) -> Path:
        return self.dir("assignments") / "assignments.parquet"

    @property
    def embeddings(self) -> Path:
        return self.dir("assignments") / "embeddings.parquet"

    @property
    def feeds(self) -> Path:
        return self.dir("feeds") / "feeds.parquet"

    @property
    def feeds_jsonl(self) -> Path:
        return self.dir("feeds") / "feeds.jsonl"
