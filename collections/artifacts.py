"""Atomic, typed artifact I/O shared by every stage, on a local disk or any fsspec filesystem.

A run folder is a local path (``runs/x``, ``file:///shared/runs/x``) or a URL such as ``s3://bucket/runs/x``
(:func:`as_path` turns it into a ``pathlib.Path`` or a ``UPath``). Every write goes to a temporary file and
is then made visible in one step, so a crash leaves either the old file or the new one, never half a file:
on a local disk the temporary file sits beside the destination and is moved into place with ``os.replace``;
on an object store it is uploaded as one object (a single PUT, or a multipart upload that S3 publishes only
when complete).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from pinlanding.collections.schemas import SCHEMA_VERSION

_META_KEY = b"pinlanding.schema_version"
_LOCAL_PROTOCOLS = ("file", "local")

FILE_MODE = 0o644  # every generated file is world-readable (site pages are served by another user)
AnyPath = Union[Path, UPath]  # a local path, or a UPath on another fsspec filesystem


def as_path(location: str | os.PathLike | AnyPath) -> AnyPath:
    """``pathlib.Path`` for a local path or ``file://`` URL; a ``UPath`` for any other fsspec URL (``s3://...``)."""
    if isinstance(location, Path):  # local UPaths are Path subclasses too
        return location
    if isinstance(location, UPath):
        return Path(location.path) if location.protocol in _LOCAL_PROTOCOLS else location
    text = os.fspath(location)
    if "://" not in text:
        return Path(text)
    return as_path(UPath(text))


def is_remote(path: str | os.PathLike | AnyPath) -> bool:
    """Whether ``path`` lives on a non-local filesystem (object storage, HDFS, ...)."""
    return not isinstance(as_path(path), Path)


def location(path: AnyPath, absolute: bool = False) -> str:
    """``path`` as a string another process can open: a URL for remote paths, else a (resolved) local path."""
    path = as_path(path)
    if is_remote(path):
        return str(path)
    return str(path.resolve()) if absolute else str(path)


def arrow_source(path: str | AnyPath) -> tuple[str, Any]:
    """``(path, filesystem)`` for pyarrow readers/writers: filesystem is None locally, else the fsspec one."""
    path = as_path(path)
    return (path.path, path.fs) if is_remote(path) else (str(path), None)


def make_dirs(*folders: str | AnyPath) -> None:
    """Create local folders (and their parents); object stores have no folders to create."""
    for folder in map(as_path, folders):
        if not is_remote(folder):
            folder.mkdir(parents=True, exist_ok=True)


def list_files(folder: str | AnyPath, pattern: str = "*") -> list[AnyPath]:
    """Sorted files directly in ``folder`` whose names match ``pattern`` (an absent folder has none).

    Remote listings are refreshed first: another process (a Ray worker, an earlier run) may have written there.
    """
    folder = as_path(folder)
    if is_remote(folder):
        folder.fs.invalidate_cache(folder.path)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob(pattern) if p.is_file()), key=str)


@contextmanager
def atomic_path(path: str | AnyPath) -> Iterator[Path]:
    """Yield a local temporary path; publish it as ``path`` only if the block succeeds.

    Locally the temporary file sits beside ``path`` and is moved with ``os.replace``; on a remote
    filesystem it sits in the system temp folder and is uploaded as one object.
    """
    path = as_path(path)
    if is_remote(path):
        with _remote_atomic_path(path) as tmp:
            yield tmp
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)  # mkstemp makes it 0600: a web server running as another user could not read it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def _remote_atomic_path(path: UPath) -> Iterator[Path]:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        path.fs.put_file(tmp, path.path)  # the object appears whole or not at all
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | AnyPath, text: str) -> AnyPath:
    """Write UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return as_path(path)


def write_json(path: str | AnyPath, obj: Any) -> AnyPath:
    """Write JSON (sorted keys, indented) atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | AnyPath, default: Any = None) -> Any:
    """Read a JSON file, or return ``default`` when it does not exist."""
    path = as_path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def stamp(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema`` and stamped with the schema version, ready to write."""
    table = table.select(schema.names).cast(schema)
    return table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: SCHEMA_VERSION.encode()})


def write_table(table: pa.Table, path: str | AnyPath, schema: pa.Schema) -> AnyPath:
    """Cast ``table`` to ``schema`` and write it as Parquet atomically, stamped with the schema version."""
    table = stamp(table, schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return as_path(path)


def read_table(path: str | AnyPath, schema: pa.Schema) -> pa.Table:
    """Read a Parquet artifact written by :func:`write_table`, checking its schema version.

    A partitioned artifact (a folder of parts, see :mod:`pinlanding.collections.parts`) is read whole:
    stages that must not hold it iterate its parts instead.
    """
    from pinlanding.collections import parts  # parts builds on this module

    if as_path(path).is_dir():  # a folder of parts (refused by read_all while unfinished)
        return parts.read_all(path, schema)
    _, source, filesystem, _ = _open_artifact(path)
    return pq.read_table(source, schema=schema, filesystem=filesystem)


def read_schema(path: str | AnyPath, schema: pa.Schema) -> pa.Schema:
    """The Arrow schema of a Parquet artifact from its footer alone, with :func:`read_table`'s checks
    (exists, schema version) and every column of ``schema`` present."""
    from pinlanding.collections import parts

    if parts.is_parted(path):
        files = parts.part_files(path)
        if not files:
            return schema
        path = files[0]
    path, _, _, found = _open_artifact(path)
    missing = [name for name in schema.names if name not in found.names]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; rerun the stage that writes it")
    return found


def _open_artifact(path: str | AnyPath) -> tuple[AnyPath, str, Any, pa.Schema]:
    """``(path, source, filesystem, footer schema)`` of an existing artifact of this schema version."""
    path = as_path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing artifact {path}; run the stage that writes it first")
    source, filesystem = arrow_source(path)
    found = pq.read_schema(source, filesystem=filesystem)
    version = (found.metadata or {}).get(_META_KEY, b"").decode()
    if version and version != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema version {version}, this pinlanding reads {SCHEMA_VERSION}; rerun its stage")
    return path, source, filesystem, found


def empty_table(schema: pa.Schema) -> pa.Table:
    """An empty table of ``schema``."""
    return schema.empty_table()


def file_digest(path: str | AnyPath, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    with as_path(path).open("rb") as f:
        return _stream_digest(f, chunk)


def _stream_digest(f: Any, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    while block := f.read(chunk):
        h.update(block)
    return h.hexdigest()


def tree_digest(path: str | AnyPath) -> str:
    """SHA-256 over the relative names and contents of every file under ``path`` (or of one file).

    Locally the contents are the files' bytes. On a remote filesystem they are the checksums the store
    lists (S3 ETag, GCS md5Hash) with the sizes, from one listing, so that fingerprinting a run folder
    does not download it; a store that lists no checksum falls back to the bytes. Both change whenever a
    file's content does; a remote digest is not comparable with a local one.
    """
    path = as_path(path)
    if is_remote(path):
        return _remote_tree_digest(path)
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and not q.name.startswith(".")):
        h.update(str(p.relative_to(path)).encode())
        h.update(file_digest(p).encode())
    return h.hexdigest()


def tree_digest_or_absent(path: str | AnyPath) -> str:
    """:func:`tree_digest`, or ``"absent"`` when nothing is at ``path``."""
    path = as_path(path)
    return tree_digest(path) if path.exists() else "absent"


_CHECKSUM_FIELDS = ("ETag", "etag", "md5Hash", "md5", "crc32c")


def _remote_tree_digest(path: UPath) -> str:
    fs, root = path.fs, path.path.rstrip("/")
    fs.invalidate_cache(root)
    if fs.isfile(root):
        return file_digest(path)
    h = hashlib.sha256()
    files = fs.find(root, detail=True) if fs.isdir(root) else {}
    for name in sorted(files):
        info = files[name]
        rel = name[len(root):].lstrip("/")
        if info.get("type") != "file" or rel.rsplit("/", 1)[-1].startswith("."):
            continue
        token = next((str(info[k]) for k in _CHECKSUM_FIELDS if info.get(k)), None)
        if token is None:
            with fs.open(name, "rb") as f:
                token = _stream_digest(f)
        h.update(rel.encode())
        h.update(f"{info.get('size')}:{token}".encode())
    return h.hexdigest()


def json_digest(obj: Any) -> str:
    """SHA-256 of an object's canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
