"""Catalogue readers: turn an input catalogue into raw records with the normalized field names.

Readers only rename and collect fields; validation and normalization happen in
:mod:`pinlanding.collections.ingest`. Formats, auto-detected from the path:

- ``myntra``: the Myntra "Fashion Product Images" layout: a folder with ``styles.jsonl.gz`` (or Kaggle's
  ``styles.csv`` / ``styles/*.json``) and ``images/{id}.jpg``. Only merchant *input* fields are read;
  ground-truth labels are read by :mod:`pinlanding.evaluation.labels` alone.
- ``jsonl`` / ``csv`` / ``parquet``: generic files (or a folder holding one) whose columns are mapped onto
  the normalized fields by ``catalog.field_mapping``.

Files are decoded with ``surrogateescape`` so that a record with invalid UTF-8 surfaces as a quarantined
record instead of failing the whole file.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urljoin

import pyarrow.parquet as pq

from pinlanding.collections.config import CatalogConfig

NORMALIZED_FIELDS = ("product_id", "title", "description", "merchant_tags", "brand", "price", "currency", "image_path",
                     "url")
MYNTRA_IMAGE_DIR = "images"
MYNTRA_SITE = "https://www.myntra.com/"  # landingPageUrl is relative to it


@dataclass
class RawRecord:
    """One input record: its position, normalized-name fields (unvalidated) and the raw text for quarantine."""

    source_row: int
    fields: dict[str, Any]
    raw: str
    error: str | None = None  # set when the record could not even be parsed


def detect_format(path: Path) -> str:
    """Guess the catalogue format from the path; raise ValueError listing the supported layouts."""
    if path.is_dir():
        if (path / "styles.jsonl.gz").exists() or (path / "styles.csv").exists() or (path / "styles").is_dir():
            return "myntra"
        files = [p for p in path.iterdir() if p.is_file() and _file_format(p)]
        if len(files) == 1:
            return _file_format(files[0])  # type: ignore[return-value]
    elif path.is_file() and _file_format(path):
        return _file_format(path)  # type: ignore[return-value]
    if not path.exists():
        raise FileNotFoundError(f"catalogue {path} does not exist")
    raise ValueError(
        f"cannot tell the format of catalogue {path}; expected a Myntra folder (styles.jsonl.gz, styles.csv or "
        "styles/ + images/) or one .jsonl/.jsonl.gz/.csv/.parquet file; set catalog.format to force one"
    )


def _file_format(path: Path) -> str | None:
    name = path.name.lower()
    for suffix, fmt in ((".jsonl", "jsonl"), (".jsonl.gz", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv"),
                        (".parquet", "parquet")):
        if name.endswith(suffix):
            return fmt
    return None


def _data_file(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(p for p in path.iterdir() if p.is_file() and _file_format(p))
    if not files:
        raise FileNotFoundError(f"no .jsonl/.csv/.parquet file in {path}")
    return files[0]


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")


def _json_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    return f"invalid JSON: {exc}"  # e.g. an integer of more digits than Python converts


def _parse_json(text: str) -> tuple[Any, str | None]:
    """``(object, None)``, or ``(None, reason)`` for text that is not JSON this reader can hold."""
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        return None, _json_error(exc)


def _iter_json_lines(path: Path) -> Iterator[tuple[int, Any, str, str | None]]:
    with _open_text(path) as f:
        for row, line in enumerate(f):
            if not line.strip():
                continue
            obj, err = _parse_json(line)
            yield row, obj, line, err


def _iter_csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(row, record, error)`` of a CSV file; a row the csv module refuses (a field over its size limit)
    is reported and the file goes on."""
    with _open_text(path) as f:
        reader, row = csv.DictReader(f), 0
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield row, None, f"unreadable CSV row: {exc}"
            else:
                yield row, rec, None
            row += 1


# ---------------------------------------------------------------------------------------------- Myntra


def _myntra_description(descriptors: Any) -> str:
    if isinstance(descriptors, dict):
        return "\n\n".join(str(v) for v in descriptors.values() if v)
    return "" if descriptors is None else str(descriptors)


def myntra_fields(obj: dict[str, Any], root: Path) -> dict[str, Any]:
    """The merchant input fields of one Myntra style record, under normalized names (no labels)."""
    pid = obj.get("id")
    price = obj.get("discountedPrice")
    if price in (None, "", 0):
        price = obj.get("price")
    return {
        "product_id": pid,
        "title": obj.get("productDisplayName"),
        "description": _myntra_description(obj.get("descriptors")),
        "merchant_tags": obj.get("displayCategories"),
        "brand": obj.get("brandName"),
        "price": price,
        "currency": None,
        "image_path": str(root / MYNTRA_IMAGE_DIR / f"{pid}.jpg") if pid not in (None, "") else None,
        "url": urljoin(MYNTRA_SITE, str(obj["landingPageUrl"])) if obj.get("landingPageUrl") else None,
    }


def read_myntra(root: Path) -> Iterator[RawRecord]:
    """Records of a Myntra folder: styles.jsonl.gz, else styles/*.json, else Kaggle's styles.csv."""
    if (root / "styles.jsonl.gz").exists():
        for row, obj, line, err in _iter_json_lines(root / "styles.jsonl.gz"):
            yield _myntra_record(row, obj, line, err, root)
    elif (root / "styles").is_dir():
        for row, file in enumerate(sorted((root / "styles").glob("*.json"))):
            text = file.read_bytes().decode("utf-8", errors="surrogateescape")
            obj, err = _parse_json(text)
            obj = obj.get("data", obj) if isinstance(obj, dict) else obj
            yield _myntra_record(row, obj, text, err and f"{err} in {file.name}", root)
    else:  # Kaggle styles.csv: the only merchant input it carries is the display name
        for row, rec, err in _iter_csv(root / "styles.csv"):
            obj = {"id": rec.get("id"), "productDisplayName": rec.get("productDisplayName")} if rec else None
            yield _myntra_record(row, obj, json.dumps(rec, ensure_ascii=False), err, root)


def _myntra_record(row: int, obj: Any, raw: str, err: str | None, root: Path) -> RawRecord:
    if err is None and not isinstance(obj, dict):
        err = f"expected a JSON object, got {type(obj).__name__}"
    fields = myntra_fields(obj, root) if err is None else {}
    return RawRecord(row, fields, raw, err)


# ---------------------------------------------------------------------------------------------- generic


def _map_fields(rec: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    unknown = set(mapping) - set(NORMALIZED_FIELDS)
    if unknown:
        raise ValueError(f"catalog.field_mapping has unknown fields {sorted(unknown)}; known: {list(NORMALIZED_FIELDS)}")
    # a field whose column the record lacks stays absent (not None): a catalogue without an image column is
    # text-only, where an empty image cell is a missing photo (ingest, catalog.require_images)
    return {name: rec[mapping.get(name, name)] for name in NORMALIZED_FIELDS if mapping.get(name, name) in rec}


def read_generic(path: Path, fmt: str, cfg: CatalogConfig) -> Iterator[RawRecord]:
    """Records of a generic JSONL / CSV / Parquet file, renamed through ``cfg.field_mapping``."""
    file = _data_file(path)
    if fmt == "jsonl":
        for row, obj, line, err in _iter_json_lines(file):
            if err is None and not isinstance(obj, dict):
                err = f"expected a JSON object, got {type(obj).__name__}"
            yield RawRecord(row, _map_fields(obj, cfg.field_mapping) if err is None else {}, line, err)
    elif fmt == "csv":
        for row, rec, err in _iter_csv(file):
            fields = _map_fields(rec, cfg.field_mapping) if rec is not None else {}
            yield RawRecord(row, fields, json.dumps(rec, ensure_ascii=False), err)
    elif fmt == "parquet":
        row = 0
        for batch in pq.ParquetFile(file).iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                yield RawRecord(row, _map_fields(rec, cfg.field_mapping), json.dumps(rec, ensure_ascii=False, default=str))
                row += 1
    else:
        raise ValueError(f"unknown catalogue format '{fmt}'; known: auto, myntra, jsonl, csv, parquet")


def read_catalog(path: str | Path, cfg: CatalogConfig) -> tuple[str, Path, Iterator[RawRecord]]:
    """Detect (or take from config) the format and return ``(format, image_root, records)``: image paths must
    resolve inside ``image_root`` unless ``catalog.allow_external_images``."""
    path = Path(path).resolve()  # relative image paths are joined to it: keep one absolute base
    fmt = detect_format(path) if cfg.format == "auto" else cfg.format
    if fmt == "myntra":  # every photo lives in its images folder (which may itself be a link)
        return fmt, path / MYNTRA_IMAGE_DIR, read_myntra(path)
    image_root = Path(cfg.image_root) if cfg.image_root else (path if path.is_dir() else path.parent)
    return fmt, image_root, read_generic(path, fmt, cfg)
