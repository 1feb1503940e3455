"""The ingest stage: validate and normalize catalogue records into ``catalog/products.parquet``.

Every record ends up in exactly one of two places: ``products.parquet`` (accepted, normalized,
content-hashed) or ``quarantine.parquet`` (with a reason code and a human-readable detail). Nothing is
dropped silently; the stage summary counts both.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import shutil
import sqlite3
import tempfile
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TypedDict

import pyarrow as pa
from PIL import Image
from tqdm import tqdm

from pinlanding.collections import schemas
from pinlanding.collections.artifacts import write_json, write_table
from pinlanding.collections.catalog import RawRecord, read_catalog
from pinlanding.collections.config import CatalogConfig
from pinlanding.collections.parts import commit_parts, part_name, write_part
from pinlanding.collections.stage_inputs import StageInputs, source_catalog
from pinlanding.collections.text import plain_text

RAW_PREVIEW_CHARS = 2000
_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")  # an object's repr: its address changes every run

class InvalidRecord(ValueError):
    """A record that cannot be accepted; ``reason`` is a stable code for the quarantine table."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

def field_text(value: Any, field: str) -> str:
    """A record field as stored text (:func:`~pinlanding.collections.text.plain_text`); a field that is not
    text, or invalid UTF-8 (decoded with ``surrogateescape`` by the readers), raises :class:`InvalidRecord`."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (dict, list, tuple, bytes)):
        raise InvalidRecord("bad_field", f"{field} is a {type(value).__name__}, not text")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRecord("bad_encoding", f"{field} is not valid UTF-8 (byte at position {exc.start})") from None
    return plain_text(text)

def parse_price(value: Any) -> float | None:
    """A non-negative finite price, ``None`` when absent; anything else is :class:`InvalidRecord`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise InvalidRecord("bad_price", f"price {value!r} is not a number")
    try:
        price = float(str(value).replace(",", "").strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise InvalidRecord("bad_price", f"price {str(value)[:50]!r} is not a number") from None
    if not math.isfinite(price) or price < 0:
        raise InvalidRecord("bad_price", f"price {price!r} is not a non-negative finite number")
    return price

def parse_tags(value: Any, separator: str, max_tags: int) -> list[str]:
    """Merchant tags from a list or a separator-joined string: cleaned, de-duplicated, order kept."""
    if value is None:
        return []
    if isinstance(value, dict):
        raise InvalidRecord("bad_field", "merchant_tags is a dict, not a list or a string")
    items = value if isinstance(value, (list, tuple)) else str(value).split(separator)
    tags: list[str] = []
    for item in items:
        tag = field_text(item, "merchant_tags")
        if tag and tag not in tags:
            tags.append(tag)
    if len(tags) > max_tags:
        raise InvalidRecord("too_many_tags", f"{len(tags)} merchant tags, more than catalog.max_tags={max_tags}")
    return tags

def normalize_fields(fields: dict[str, Any], cfg: CatalogConfig, image_root: Path) -> dict[str, Any]:
    """Validate one record's fields; return the normalized product (without hash) or raise InvalidRecord.

    ``image_path`` is None for a product without a photo (allowed where :func:`images_required` is false);
    ``image_optional`` says whether a photo named but absent leaves the product text-only.
    """
    pid = fields.get("product_id")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, (str, int))):
        raise InvalidRecord("bad_id", f"product_id is a {type(pid).__name__}, not a string or an integer")
    pid = field_text(pid, "product_id") if pid is not None else ""
    if not pid:
        raise InvalidRecord("missing_id", "product_id is missing or empty")
    if len(pid) > 200:
        raise InvalidRecord("bad_id", f"product_id is {len(pid)} characters long")
    title = field_text(fields.get("title"), "title").replace("\n", " ")
    if not title:
        raise InvalidRecord("empty_title", "title is missing or empty")
    if len(title) > cfg.max_title_chars:
        raise InvalidRecord("title_too_long", f"title is {len(title)} characters, more than {cfg.max_title_chars}")
    description = field_text(fields.get("description"), "description")
    if len(description) > cfg.max_description_chars:
        description = description[: cfg.max_description_chars].rsplit(" ", 1)[0]
    required = images_required(cfg, "image_path" in fields)
    image = fields.get("image_path")
    image = field_text(image, "image_path") if image is not None else ""
    if not image and required:
        raise InvalidRecord("missing_image", "no image path")
    return {
        "product_id": pid,
        "title": title,
        "description": description,
        "merchant_tags": parse_tags(fields.get("merchant_tags"), cfg.tags_separator, cfg.max_tags),
        "brand": field_text(fields.get("brand"), "brand").replace("\n", " ") or None,
        "price": parse_price(fields.get("price")),
        "currency": field_text(fields.get("currency"), "currency") or cfg.currency,
        "image_path": resolve_image(image, image_root, cfg.allow_external_images) if image else None,
        "image_optional": not required,
        "url": clean_url(fields.get("url")),
    }

def images_required(cfg: CatalogConfig, has_image_field: bool) -> bool:
    """``catalog.require_images``; unset, a photo is required wherever the record has an image field."""
    return has_image_field if cfg.require_images is None else cfg.require_images

def resolve_image(image: str, image_root: Path, allow_external: bool) -> str:
    """The absolute, link-free path of an image; it must lie inside ``image_root`` (absolute paths, ``..``
    and symbolic links out of it are refused) unless ``allow_external``."""
    root = image_root.resolve()
    path = (root / image).resolve()  # an absolute ``image`` replaces root
    if not allow_external and not path.is_relative_to(root):
        raise InvalidRecord("image_outside_catalog", f"image {image} resolves outside {root} "
                                                     "(catalog.allow_external_images is false)")
    return str(path)

def clean_url(value: Any) -> str | None:
    """An absolute http(s) URL without whitespace, or None: anything else (``javascript:``, relative, bad
    text) is not a link the landing pages may publish, and is dropped rather than quarantining the product."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if len(text) > 2000 or not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", text, re.IGNORECASE):
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text

def image_digest(path: str, verify: bool) -> str:
    """SHA-256 of an image file's bytes, after checking that it decodes (when ``verify``).

    Any decode failure (a decompression bomb included) is ``corrupt_image`` with a detail that is the
    same on every run: no object reprs, so an unchanged catalogue hashes to the same artifacts.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidRecord("missing_image", f"image file {path} does not exist") from None
    except OSError as exc:
        raise InvalidRecord("missing_image", f"image file {path} cannot be read: {exc.strerror}") from None
    if verify:
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
        except Exception as exc:  # Pillow raises many types for hostile files (bomb, struct, EOF, memory)
            reason = _REPR.sub("image", str(exc))[:200]
            raise InvalidRecord("corrupt_image", f"image file {path} does not decode: "
                                                 f"{type(exc).__name__}: {reason}") from None
    return hashlib.sha256(data).hexdigest()

def content_hash(product: dict[str, Any], image_sha: str) -> str:
    """Fingerprint of everything a later stage may read: normalized fields and the image bytes."""
    fields = {k: product[k] for k in ("product_id", "title", "description", "merchant_tags", "brand", "price", "currency")}
    payload = json.dumps(fields, sort_keys=True, ensure_ascii=False) + "\x00" + image_sha  # "": no photo
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()

@dataclass
class IngestResult:
    products: pa.Table
    quarantine: pa.Table
    format: str

    def summary(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for reason in self.quarantine.column("reason").to_pylist():
            reasons[reason] = reasons.get(reason, 0) + 1
        return {"format": self.format, "products": self.products.num_rows,
                "quarantined": self.quarantine.num_rows, "quarantine_reasons": dict(sorted(reasons.items()))}

def _quarantine_row(rec: RawRecord, pid: Any, reason: str, detail: str) -> dict[str, Any]:
    raw = rec.raw.encode("utf-8", errors="backslashreplace").decode("utf-8")
    pid_text = None if pid in (None, "") else str(pid).encode("utf-8", errors="backslashreplace").decode()[:200]
    return {"source_row": rec.source_row, "product_id": pid_text, "reason": reason, "detail": detail,
            "raw": raw[:RAW_PREVIEW_CHARS]}

def ingest_chunks(path: str | Path, cfg: CatalogConfig, workers: int | None = None, progress: bool = True,
                  scratch: Path | None = None) -> tuple[str, Iterator[IngestResult]]:
    """Read, validate and hash a catalogue in chunks of ``cfg.part_rows`` accepted records, the records checked
    by ``workers`` processes (None: :func:`default_workers`); the result does not depend on how many.

    Returns the detected format and an iterator of results, one per chunk, in catalogue order; every
    record is accepted or quarantined with a reason. Memory holds one chunk; the product ids seen so far
    (duplicates are found across the whole catalogue) are kept on local scratch disk (:class:`SeenIds`), under
    ``scratch`` when given (else the system temp folder).
    """
    fmt, image_root, records = read_catalog(path, cfg)
    return fmt, _chunks(fmt, image_root, records, cfg, workers or default_workers(), progress, scratch)

class SeenIds:
    """The product ids seen so far, each with its first source row, in a scratch folder of its own.

    SQLite (the standard library's), not a dict: a dict of ids costs about 120 MB per million products on
    the driver (12 GB at 100M); the B-tree keeps them on disk behind a 64 MB page cache (about 20 us an id here).
    Use it as a context manager: leaving it closes the database and removes the folder.
    """

    def __init__(self, parent: Path | None = None) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="pinlanding-ids-", dir=parent)
        self._db = sqlite3.connect(Path(self._scratch.name) / "ids.sqlite", isolation_level=None)
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536; "
                               "CREATE TABLE ids (id TEXT PRIMARY KEY, row INTEGER) WITHOUT ROWID;")

    def __enter__(self) -> "SeenIds":
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()
        self._scratch.cleanup()

    def first_row(self, product_id: str, row: int) -> int:
        """The source row that first used ``product_id``: ``row`` itself when it is new (it is recorded)."""
        if self._db.execute("INSERT OR IGNORE INTO ids VALUES (?, ?)", (product_id, row)).rowcount:
            return row
        return self._db.execute("SELECT row FROM ids WHERE id = ?", (product_id,)).fetchone()[0]

BATCH_RECORDS = 1000  # records a worker process normalizes and hashes at a time
# default worker processes: the cores this process may use, at most 8. A worker checks about 3,500 records/s and
# the driver (reading, duplicate ids, parts) caps the stage near 16,500/s (benchmarks/RESULTS.md), so more
# workers would only hold memory
MAX_WORKERS = 8

@dataclass(frozen=True)
class Checked:
    """One record's worker-side outcome: the normalized product with its content hash, or why it fails;
    ``image_failure`` is set when the fields are valid but the photo is not (the record may still be a duplicate,
    which the driver decides first, in catalogue order). Plain fields: it crosses processes."""

    product_id: Any = None
    product: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None
    image_failure: bool = False

def check_record(rec: RawRecord, cfg: CatalogConfig, image_root: Path) -> Checked:
    """Normalize one parsed record and hash its photo (verified when ``cfg.verify_images``)."""
    try:
        product = normalize_fields(rec.fields, cfg, image_root)
    except InvalidRecord as exc:
        return Checked(rec.fields.get("product_id"), None, exc.reason, exc.detail)
    optional = product.pop("image_optional")
    image_sha = ""
    if product["image_path"] is not None:
        try:
            image_sha = image_digest(product["image_path"], cfg.verify_images)
        except InvalidRecord as exc:
            if not (exc.reason == "missing_image" and optional):
                return Checked(product["product_id"], product, exc.reason, exc.detail, image_failure=True)
            product["image_path"] = None  # a photo named but absent: the product is text-only
    product["content_hash"] = content_hash(product, image_sha)
    return Checked(product["product_id"], product)

def default_workers() -> int:
    """Worker processes when none are asked for: the cores this process may run on, at most ``MAX_WORKERS``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))

def _check_batch(batch: list[RawRecord], cfg: CatalogConfig, image_root: Path) -> list[Checked]:
    return [Checked(reason="unparseable") if rec.error else check_record(rec, cfg, image_root) for rec in batch]

def _checked_batches(batches: Iterator[list[RawRecord]], cfg: CatalogConfig, image_root: Path, workers: int
                     ) -> Iterator[tuple[list[RawRecord], list[Checked]]]:
    """Each batch with its outcomes, in order. A catalogue of one batch is checked here; a larger one by
    ``workers`` processes (normalizing, decoding and hashing are CPU work that threads would serialize on the
    GIL), at most ``2 * workers`` batches in flight so memory holds a bounded window of the catalogue."""
    head = list(itertools.islice(batches, 2))
    if len(head) < 2 or workers <= 1:
        for batch in itertools.chain(head, batches):
            yield batch, _check_batch(batch, cfg, image_root)
        return
    # spawn: the stage may run in a process that already holds Ray, Spark or torch threads, which fork would copy
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque = deque()
        for batch in itertools.chain(head, batches):
            pending.append((batch, pool.submit(_check_batch, batch, cfg, image_root)))
            if len(pending) >= 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()

def _chunks(fmt: str, image_root: Path, records: Iterator[RawRecord], cfg: CatalogConfig, workers: int,
            progress: bool, scratch: Path | None = None) -> Iterator[IngestResult]:
    """Outcomes in catalogue order -> chunks of ``cfg.part_rows`` products that passed the duplicate check (some
    may then fail on their photo), with the records quarantined since the previous chunk."""
    products: list[dict[str, Any]] = []
    quarantined: list[dict[str, Any]] = []
    candidates = 0
    bar = tqdm(desc="ingesting catalogue", unit=" rec", disable=not progress)
    batches = iter(lambda: list(itertools.islice(records, BATCH_RECORDS)), [])
    with bar, SeenIds(scratch) as seen:
        for batch, outcomes in _checked_batches(batches, cfg, image_root, workers):
            bar.update(len(batch))
            for rec, out in zip(batch, outcomes):
                if rec.error:
                    quarantined.append(_quarantine_row(rec, None, "unparseable", rec.error))
                    continue
                if out.product is None:
                    quarantined.append(_quarantine_row(rec, out.product_id, out.reason, out.detail))
                    continue
                first = seen.first_row(out.product_id, rec.source_row)
                if first != rec.source_row:
                    quarantined.append(_quarantine_row(rec, out.product_id, "duplicate_id",
                                                       f"product_id already used by source row {first}"))
                    continue
                candidates += 1
                if out.image_failure:
                    quarantined.append(_quarantine_row(rec, out.product_id, out.reason, out.detail))
                else:
                    products.append({**out.product, "source_row": rec.source_row})
                if candidates >= cfg.part_rows:
                    yield _result(products, quarantined, fmt)
                    products, quarantined, candidates = [], [], 0
        if candidates or quarantined:
            yield _result(products, quarantined, fmt)

def _result(products: list[dict[str, Any]], quarantined: list[dict[str, Any]], fmt: str) -> IngestResult:
    quarantined.sort(key=lambda r: r["source_row"])
    return IngestResult(products=pa.Table.from_pylist(products, schema=schemas.PRODUCTS),
                        quarantine=pa.Table.from_pylist(quarantined, schema=schemas.QUARANTINE), format=fmt)

def ingest(path: str | Path, cfg: CatalogConfig, workers: int | None = None, progress: bool = True) -> IngestResult:
    """The whole catalogue in one result (tests, small catalogues); the stage writes chunk by chunk."""
    fmt, chunks = ingest_chunks(path, cfg, workers, progress)
    results = list(chunks)
    return IngestResult(
        products=pa.concat_tables([r.products for r in results]) if results else schemas.PRODUCTS.empty_table(),
        quarantine=(pa.concat_tables([r.quarantine for r in results]) if results
                    else schemas.QUARANTINE.empty_table()),
        format=fmt)

@dataclass(frozen=True)
class IngestInputs(StageInputs):
    """The ingest stage reads the input catalogue only."""

    outputs = ("catalog",)
    source: Path = source_catalog()


class IngestCounts(TypedDict):
    format: str
    products: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    parts: int


def run_ingest(cfg: CatalogConfig, inputs: IngestInputs) -> IngestCounts:
    """Pipeline stage: ingest ``inputs.source`` into ``catalog/``."""
    layout = inputs.layout
    scratch = None
    if not layout.remote:  # in the run folder, emptied here: what a killed ingest left does not pile up in /tmp
        scratch = layout.root / ".ingest-tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
    fmt, chunks = ingest_chunks(inputs.source, cfg, scratch=scratch)
    parts, quarantine = [], []
    for chunk in chunks:  # one part per chunk, written as soon as it is checked
        if chunk.products.num_rows:
            parts.append(write_part(layout.products, part_name(len(parts)), chunk.products, schemas.PRODUCTS))
        quarantine.append(chunk.quarantine)  # quarantined records are few: kept until the end
    commit_parts(layout.products, parts, schemas.PRODUCTS)
    result = IngestResult(products=schemas.PRODUCTS.empty_table(), format=fmt,
                          quarantine=pa.concat_tables(quarantine) if quarantine else schemas.QUARANTINE.empty_table())
    write_table(result.quarantine, layout.quarantine, schemas.QUARANTINE)
    summary: IngestCounts = {**result.summary(), "products": sum(p.rows for p in parts), "parts": len(parts)}
    write_json(layout.dir("catalog") / "summary.json", summary)
    if summary["products"] == 0:
        raise ValueError(f"no valid product in {inputs.source}: all {summary['quarantined']} records quarantined "
                         f"({summary['quarantine_reasons']}); see {layout.quarantine}")
    return summary
