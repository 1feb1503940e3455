"""Partitioned artifacts: one table stored as Parquet part files in a folder, committed by a listing.

The per-product tables of a run (products, extracted and curated attributes, embeddings, assignments) are
written part by part, so that no stage holds a whole catalogue in memory: a stage reads part ``part-00003``
of its inputs, writes part ``part-00003`` of its output, and moves on (or runs the parts as Ray tasks, see
:func:`pinlanding.collections.engines.map_parts`). Every per-product artifact is partitioned like
``catalog/products.parquet``: part ``part-00003`` of any of them holds rows of the products of catalog part
``part-00003`` only, so co-partitioned inputs join one part at a time.

Layout (the folder keeps the ``.parquet`` name, as Spark's output folders do)::

    products.parquet/
        _parts.json                       # written last: names, files and row counts of the parts
        part-00000.1f3a9c0b2d4e.parquet   # <part name>.<content digest>.parquet

A part's file name carries a digest of its bytes, so rewriting a part never overwrites the file a
reader may be reading, and the same content gets the same name (run fingerprints stay stable). The
listing is written atomically after every part of it is: a folder without ``_parts.json`` is an
unfinished write, and readers refuse it. Files no listing names are removed after the commit.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pinlanding.collections.artifacts import (AnyPath, arrow_source, as_path, atomic_path, list_files, make_dirs, read_json,
                                              read_table, stamp, write_json)
from pinlanding.collections.schemas import SCHEMA_VERSION

PARTS_FILE = "_parts.json"


def part_name(index: int) -> str:
    """The name of the ``index``-th part (``part-00003``); names sort in part order."""
    return f"part-{index:05d}"


def is_parted(path: str | AnyPath) -> bool:
    """Whether ``path`` is a committed partitioned artifact (a folder with ``_parts.json``)."""
    return (as_path(path) / PARTS_FILE).exists()


@dataclass(frozen=True)
class Part:
    """One committed part: its name, its file (relative to the folder) and its row count."""

    name: str
    file: str
    rows: int


def write_part(folder: str | AnyPath, name: str, table: pa.Table, schema: pa.Schema) -> Part:
    """Write one part atomically under a content-addressed file name (any process may call this)."""
    folder = as_path(folder)
    buffer = io.BytesIO()
    pq.write_table(stamp(table, schema), buffer)
    data = buffer.getvalue()
    file = f"{name}.{hashlib.sha256(data).hexdigest()[:12]}.parquet"
    make_dirs(folder)
    with atomic_path(folder / file) as tmp:
        tmp.write_bytes(data)
    return Part(name, file, table.num_rows)


def commit_parts(folder: str | AnyPath, parts: list[Part], schema: pa.Schema) -> None:
    """Publish ``parts`` (sorted by name) as the artifact's content; remove files no longer listed."""
    folder = as_path(folder)
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate part names in a commit to {folder}")
    parts = sorted(parts, key=lambda p: p.name)
    write_json(folder / PARTS_FILE, {"schema_version": SCHEMA_VERSION, "columns": schema.names,
                                     "rows": sum(p.rows for p in parts),
                                     "parts": [{"name": p.name, "file": p.file, "rows": p.rows} for p in parts]})
    keep = {p.file for p in parts} | {PARTS_FILE}
    for stale in list_files(folder):
        if stale.name not in keep and not stale.name.startswith("."):
            stale.unlink(missing_ok=True)


def write_parts(folder: str | AnyPath, tables: dict[str, pa.Table], schema: pa.Schema) -> list[Part]:
    """Write and commit a whole partitioned artifact from ``{part name: table}``."""
    parts = [write_part(folder, name, table, schema) for name, table in tables.items()]
    commit_parts(folder, parts, schema)
    return parts


def list_parts(folder: str | AnyPath) -> list[Part]:
    """The committed parts of ``folder``, in name order. A single Parquet file (an artifact written
    whole, as small test fixtures are) reads as one part, ``part-00000``."""
    folder = as_path(folder)
    if folder.is_file():
        return [Part(part_name(0), "", pq.ParquetFile(*_source(folder)).metadata.num_rows)]
    listing = read_json(folder / PARTS_FILE)
    if listing is None:
        state = "an unfinished write (no _parts.json)" if folder.exists() else "missing"
        raise FileNotFoundError(f"partitioned artifact {folder} is {state}; run the stage that writes it")
    if listing.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{folder} has schema version {listing.get('schema_version')}, this pinlanding reads "
                         f"{SCHEMA_VERSION}; rerun its stage")
    return [Part(p["name"], p["file"], int(p["rows"])) for p in listing["parts"]]


def _source(path: AnyPath) -> tuple[Any, ...]:
    source, filesystem = arrow_source(path)
    return (source,) if filesystem is None else (filesystem.open(source, "rb"),)


def _file(folder: AnyPath, part: Part) -> AnyPath:
    return folder / part.file if part.file else folder


def part_names(folder: str | AnyPath) -> list[str]:
    return [p.name for p in list_parts(folder)]


def part_files(folder: str | AnyPath) -> list[AnyPath]:
    """The files of the committed parts, in name order (for engines that read Parquet themselves)."""
    folder = as_path(folder)
    return [_file(folder, p) for p in list_parts(folder)]


def count_rows(folder: str | AnyPath) -> int:
    """Rows of a partitioned artifact, from its listing alone."""
    return sum(p.rows for p in list_parts(folder))


def read_part(folder: str | AnyPath, name: str, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """One part by name; a part the artifact does not have is an empty table (its products had no rows)."""
    folder = as_path(folder)
    found = {p.name: p for p in list_parts(folder)}
    if name not in found:
        table = schema.empty_table()
        return table.select(columns) if columns else table
    table = read_table(_file(folder, found[name]), schema)
    return table.select(columns) if columns else table


def iter_parts(folder: str | AnyPath, schema: pa.Schema,
               columns: list[str] | None = None) -> Iterator[tuple[str, pa.Table]]:
    """``(name, table)`` for every committed part, one at a time."""
    folder = as_path(folder)
    for part in list_parts(folder):
        table = read_table(_file(folder, part), schema)
        yield part.name, (table.select(columns) if columns else table)


def select_rows(folder: str | AnyPath, schema: pa.Schema, column: str, values: Iterable[Any],
                columns: list[str] | None = None) -> pa.Table:
    """The rows whose ``column`` is in ``values``, read part by part: holds the matches, never the artifact."""
    wanted = pa.array(sorted(set(values)), schema.field(column).type)
    found = [t.filter(pc.is_in(t[column], wanted)) for _, t in iter_parts(folder, schema, columns)]
    empty = schema.empty_table()
    return pa.concat_tables(found) if found else (empty.select(columns) if columns else empty)


def read_all(folder: str | AnyPath, schema: pa.Schema) -> pa.Table:
    """Every part concatenated: for artifacts small enough to hold (tests, reports on one machine)."""
    tables = [t for _, t in iter_parts(folder, schema)]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def summary(folder: str | AnyPath) -> dict[str, Any]:
    parts = list_parts(folder)
    return {"parts": len(parts), "rows": sum(p.rows for p in parts)}
