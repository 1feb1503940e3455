"""Atomic, typed artifact I/O shared by every stage.

Every write goes to a temporary file in the destination folder and is moved into place with
``os.replace``, so a crash leaves either the old file or the new one, never half a file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pinlanding.collections.schemas import SCHEMA_VERSION

_META_KEY = b"pinlanding.schema_version"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (sorted keys, indented) atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path, default: Any = None) -> Any:
    """Read a JSON file, or return ``default`` when it does not exist."""
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def write_table(table: pa.Table, path: str | Path, schema: pa.Schema) -> Path:
    """Cast ``table`` to ``schema`` and write it as Parquet atomically, stamped with the schema version."""
    table = table.select(schema.names).cast(schema)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: SCHEMA_VERSION.encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_table(path: str | Path, schema: pa.Schema) -> pa.Table:
    """Read a Parquet artifact written by :func:`write_table`, checking its schema version."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing artifact {path}; run the stage that writes it first")
    meta = pq.read_schema(path).metadata or {}
    version = meta.get(_META_KEY, b"").decode()
    if version and version != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema version {version}, this pinlanding reads {SCHEMA_VERSION}; rerun its stage")
    return pq.read_table(path, schema=schema)


def empty_table(schema: pa.Schema) -> pa.Table:
    """An empty table of ``schema``."""
    return schema.empty_table()


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_digest(path: str | Path) -> str:
    """SHA-256 over the relative names and bytes of every file under ``path`` (or of one file)."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and not q.name.startswith(".")):
        h.update(str(p.relative_to(path)).encode())
        h.update(file_digest(p).encode())
    return h.hexdigest()


def json_digest(obj: Any) -> str:
    """SHA-256 of an object's canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
