"""Compare two run folders artifact by artifact: what the cluster run (or a run on object storage) must
reproduce of the local run. Either folder may be a ``Path`` or a ``UPath`` (``s3://...``)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pinlanding.collections.artifacts import AnyPath, arrow_source
from pinlanding.collections.parts import part_files

# Deterministic artifacts of the engine stages (caches, summaries with timings and manifests excluded).
ARTIFACTS = {
    "ingest": ("catalog/products.parquet",),
    "extract": ("attributes/attributes.parquet", "attributes/failures.parquet"),
    "vocab": ("vocabulary/vocabulary.parquet", "vocabulary/attributes.parquet"),
    "topics": ("topics/topics.parquet",),
    "assign": ("assignments/assignments.parquet", "assignments/embeddings.parquet"),
    "feeds": ("feeds/feeds.jsonl", "feeds/feeds.parquet", "feeds/dropped.parquet"),
}

# Columns that differ between any two runs, cluster or not. model_version is the digest of encoder/model.safetensors,
# whose bytes embed the random temporary file name torch.save wrote to (encoders/bundle.py:save_bundle), so two
# identical trainings get different versions; the embeddings themselves are compared bit for bit.
RUN_SPECIFIC = {"assignments/embeddings.parquet": ("model_version",)}


def rows(path: AnyPath, ignore: tuple[str, ...] = ()) -> list[str]:
    """A file's content as sorted canonical lines: Parquet rows as JSON (row order is not part of a table's
    meaning), other files line by line in their own order (feeds.jsonl is ranked)."""
    if path.suffix == ".parquet":
        table = _read(path)
        table = table.drop_columns([c for c in ignore if c in table.column_names])
        return sorted(json.dumps(r, sort_keys=True, default=str) for r in table.to_pylist())
    return path.read_text(encoding="utf-8").splitlines()


def _read(path: AnyPath) -> pa.Table:
    """A Parquet artifact: one file, or the committed parts of a part folder, concatenated."""
    tables = []
    for file in part_files(path):
        source, filesystem = arrow_source(file)
        tables.append(pq.read_table(source, filesystem=filesystem).replace_schema_metadata(None))
    return pa.concat_tables(tables)


def differences(local: AnyPath, other: AnyPath, stages: list[str]) -> dict[str, str]:
    """``{artifact: what differs}`` for every artifact of ``stages`` (one missing on either side differs)."""
    diffs: dict[str, str] = {}
    for stage in stages:
        for rel in ARTIFACTS.get(stage, ()):
            missing = [side for side, root in (("local", local), ("other", other)) if not (root / rel).exists()]
            if missing:
                diffs[rel] = f"missing from the {' and '.join(missing)} run"
                continue
            ignore = RUN_SPECIFIC.get(rel, ())
            a, b = rows(local / rel, ignore), rows(other / rel, ignore)
            if a != b:
                only_a, only_b = set(a) - set(b), set(b) - set(a)
                diffs[rel] = (f"{len(a)} vs {len(b)} rows; {len(only_a)} only local, {len(only_b)} only other; "
                              f"e.g. {sorted(only_a)[:1]} / {sorted(only_b)[:1]}")
    return diffs


def duplicated(path: Path, key: tuple[str, ...]) -> int:
    """Rows of a Parquet file whose ``key`` columns repeat an earlier row."""
    table = _read(path).select(list(key)).to_pylist()
    keys = [tuple(r[k] for k in key) for r in table]
    return len(keys) - len(set(keys))
