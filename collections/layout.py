"""The layout of a run: one folder per stage under the run folder, plus ``manifest.json``.

The run folder is a local path or an fsspec URL (``s3://bucket/runs/x``); see :func:`artifacts.as_path`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pinlanding.collections.artifacts import AnyPath, as_path, is_remote, make_dirs

REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_data_path(path: str | Path) -> Path:
    """A configured local file outside the run (shopper queries, a prompt): as given when it exists or is
    absolute, else from the repository root when it exists there, else as given (so errors name it)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p if (REPO_ROOT / p).exists() else p


VISUAL_INDEX_FILE = "visual_index.parquet"  # under assignments/ (pinlanding.encoders.visual)
STAGE_DIRS = ("catalog", "attributes", "vocabulary", "topics", "encoder", "assignments", "feeds", "site", "report")


@dataclass(frozen=True)
class RunLayout:
    """Paths of every artifact of a run rooted at ``root``; ``folders``, when given, are the only artifact
    folders it hands out (a stage's layout: the folders its inputs declare and those it writes)."""

    root: AnyPath
    folders: frozenset[str] | None = None

    def __post_init__(self) -> None:
        root = as_path(self.root)
        # absolute, so that paths handed to Ray tasks and Spark executors (other working directories) still resolve
        object.__setattr__(self, "root", root if is_remote(root) else root.absolute())

    def narrowed(self, folders: tuple[str, ...]) -> "RunLayout":
        """The same run folder, handing out only ``folders``."""
        return RunLayout(self.root, frozenset(folders))

    @property
    def remote(self) -> bool:
        """Whether the run folder is on a remote filesystem (object storage), not a local disk."""
        return is_remote(self.root)

    def dir(self, name: str) -> AnyPath:
        """The folder of one stage's artifacts (created on demand; object stores have no folders to create)."""
        if name not in STAGE_DIRS:
            raise ValueError(f"unknown artifact folder '{name}'; known: {list(STAGE_DIRS)}")
        if self.folders is not None and name not in self.folders:
            raise ValueError(f"'{name}' is not among this stage's folders {sorted(self.folders)}: declare it in "
                             "the stage's inputs type")
        path = self.root / name
        make_dirs(path)
        return path

    @property
    def manifest(self) -> AnyPath:
        return self.root / "manifest.json"

    @property
    def products(self) -> AnyPath:
        return self.dir("catalog") / "products.parquet"

    @property
    def quarantine(self) -> AnyPath:
        return self.dir("catalog") / "quarantine.parquet"

    @property
    def attributes(self) -> AnyPath:
        """Raw extracted attributes."""
        return self.dir("attributes") / "attributes.parquet"

    @property
    def curated_attributes(self) -> AnyPath:
        """Extracted attributes mapped onto the curated vocabulary."""
        return self.dir("vocabulary") / "attributes.parquet"

    @property
    def vocabulary(self) -> AnyPath:
        return self.dir("vocabulary") / "vocabulary.parquet"

    @property
    def topics(self) -> AnyPath:
        return self.dir("topics") / "topics.parquet"

    @property
    def assignments(self) -> AnyPath:
        return self.dir("assignments") / "assignments.parquet"

    @property
    def embeddings(self) -> AnyPath:
        return self.dir("assignments") / "embeddings.parquet"

    @property
    def visual_index(self) -> AnyPath:
        """The visual search index (pinlanding.encoders.visual), written by the assign stage."""
        return self.dir("assignments") / VISUAL_INDEX_FILE

    @property
    def feeds(self) -> AnyPath:
        return self.dir("feeds") / "feeds.parquet"

    @property
    def feeds_jsonl(self) -> AnyPath:
        return self.dir("feeds") / "feeds.jsonl"
