"""Hostile catalogue records, class by class: each record must be accepted (clean) or quarantined with a
reason; none lost, no crash. Prints one line per class and the totals.

Each class is ingested as its own small catalogue (a clean record plus the hostile ones, so a crash is
pinned to its class); accepted text is checked for markup and invisible format characters.
Usage: python benchmarks/bench_bad_input.py
"""
from __future__ import annotations

import csv
import json
import os
import struct
import sys
import tempfile
import unicodedata
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable

from PIL import Image

from pinlanding.collections.config import CatalogConfig
from pinlanding.collections.ingest import ingest

Builder = Callable[[Path], tuple[Path, int]]  # (catalogue folder) -> (catalogue path, hostile records written)


def jpeg(path: Path, size: tuple[int, int] = (60, 80)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (180, 40, 40)).save(path, format="JPEG")
    return path


def png_header(path: Path, width: int, height: int, extra: bytes = b"") -> Path:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb when large), plus ``extra`` chunks."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
                     + chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * width) * height)) + chunk(b"IEND", b""))
    return path


def text_bomb_chunk() -> bytes:
    """A compressed PNG text chunk that inflates past Pillow's limit."""
    data = b"Comment\x00\x00" + zlib.compress(b"A" * 200_000_000, 9)
    return struct.pack(">I", len(data)) + b"zTXt" + data + struct.pack(">I", zlib.crc32(b"zTXt" + data))


def good(root: Path, pid: str = "clean-0", **over) -> dict:
    return {"product_id": pid, "title": "Red Cotton Dress", "description": "A red dress.", "brand": "Acme",
            "merchant_tags": ["Dresses"], "price": 999, "image_path": str(jpeg(root / "images" / f"{pid}.jpg")), **over}


def jsonl(*records: Callable[[Path], dict | str]) -> Builder:
    """A JSONL catalogue of one clean record and the given records (dicts, or raw lines as str)."""
    def build(root: Path) -> tuple[Path, int]:
        lines = [json.dumps(good(root))]
        for i, make in enumerate(records):
            rec = make(root)
            if isinstance(rec, dict):
                rec = json.dumps({**good(root, f"h{i}"), **rec}, ensure_ascii=False)
            lines.append(rec)
        path = root / "catalog.jsonl"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
        return path, len(records)
    return build


def raw_bytes(line: bytes) -> Builder:
    def build(root: Path) -> tuple[Path, int]:
        path = root / "catalog.jsonl"
        path.write_bytes(json.dumps(good(root)).encode() + b"\n" + line + b"\n")
        return path, 1
    return build


def csv_rows(*rows: list[str]) -> Builder:
    def build(root: Path) -> tuple[Path, int]:
        path = root / "catalog.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["product_id", "title", "price", "image_path"])
            w.writerow(["clean-0", "Red Dress", "10", str(jpeg(root / "images" / "clean-0.jpg"))])
            for row in rows:
                f.write(row if isinstance(row, str) else ",".join(row) + "\n")
        return path, len(rows)
    return build


def img(make: Callable[[Path], Path]) -> Callable[[Path], dict]:
    return lambda root: {"image_path": str(make(root))}


def symlink_out(root: Path) -> Path:
    target = jpeg(root.parent / f"{root.name}-outside" / "secret.jpg")
    link = root / "images" / "link.jpg"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def outside(root: Path) -> Path:
    return jpeg(root.parent / f"{root.name}-outside" / "x.jpg")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def truncated(root: Path) -> Path:
    p = jpeg(root / "images" / "t.jpg", (300, 300))
    return write(p, p.read_bytes()[:400])


CLASSES: dict[str, Builder] = {
    "invalid JSON line": raw_bytes(b'{"product_id": "x", "title": '),
    "JSON array, not an object": raw_bytes(b'["x", "y"]'),
    "JSON scalar": raw_bytes(b'"just a string"'),
    "JSON nested 100k deep": raw_bytes(b"[" * 100_000 + b"]" * 100_000),
    "integer of 5,000 digits": raw_bytes(b'{"product_id": "x", "title": "t", "price": ' + b"9" * 5000 + b"}"),
    "invalid UTF-8 in title": raw_bytes(b'{"product_id": "x", "title": "Caf\xe9 \xff", "image_path": "x.jpg"}'),
    "lone surrogate escape": raw_bytes(b'{"product_id": "x", "title": "bad \\ud800 text"}'),
    "UTF-8 BOM before the record": raw_bytes("\ufeff".encode() + b'{"product_id": "x", "title": "t"}'),
    "missing id": jsonl(lambda r: {"product_id": None}),
    "empty id": jsonl(lambda r: {"product_id": "   "}),
    "id is an object": jsonl(lambda r: {"product_id": {"$oid": "1"}}),
    "id is a list": jsonl(lambda r: {"product_id": [1, 2]}),
    "id is a float": jsonl(lambda r: {"product_id": 1.5}),
    "id is a boolean": jsonl(lambda r: {"product_id": True}),
    "id of 5,000 characters": jsonl(lambda r: {"product_id": "i" * 5000}),
    "duplicate id": jsonl(lambda r: {"product_id": "clean-0"}),
    "missing title": jsonl(lambda r: {"title": None}),
    "whitespace title": jsonl(lambda r: {"title": " \t\u00a0 "}),
    "markup-only title": jsonl(lambda r: {"title": "<b></b><br/>"}),
    "title of 50,000 characters": jsonl(lambda r: {"title": "long " * 10_000}),
    "script tag in title": jsonl(lambda r: {"title": '<script>alert("x")</script>Dress'}),
    "entity-encoded script": jsonl(lambda r: {"title": "&lt;script&gt;alert(1)&lt;/script&gt;Dress"}),
    "double-encoded markup": jsonl(lambda r: {"title": "&amp;lt;img src=x onerror=alert(1)&amp;gt;Dress"}),
    "bidi overrides and zero-width": jsonl(lambda r: {"title": "Dress \u202egnp.exe\u2066\u200b\ufeff",
                                                      "brand": "Ac\u200dme\u2067"}),
    "NUL and control characters": jsonl(lambda r: {"title": "Dress\x00\x07\x1b[31m", "description": "\x00\x08"}),
    "combining-mark flood": jsonl(lambda r: {"title": "D" + "\u0301" * 2000 + "ress"}),
    "description of 1 MB": jsonl(lambda r: {"description": "word " * 200_000}),
    "price not a number": jsonl(lambda r: {"price": "ten rupees"}),
    "negative price": jsonl(lambda r: {"price": -5}),
    "NaN and infinite price": jsonl(lambda r: {"price": "NaN"}, lambda r: {"price": "Infinity"}),
    "boolean price": jsonl(lambda r: {"price": True}),
    "500 merchant tags": jsonl(lambda r: {"merchant_tags": [f"t{i}" for i in range(500)]}),
    "tags as an object": jsonl(lambda r: {"merchant_tags": {"a": 1}}),
    "brand as an object": jsonl(lambda r: {"brand": {"name": "<b>X</b>"}}),
    "no image path": jsonl(lambda r: {"image_path": ""}),
    "image file missing": jsonl(lambda r: {"image_path": "images/none.jpg"}),
    "image not an image": jsonl(img(lambda r: write(r / "images" / "g.jpg", b"this is not a jpeg"))),
    "zero-byte image": jsonl(img(lambda r: write(r / "images" / "z.jpg", b""))),
    "truncated JPEG": jsonl(img(truncated)),
    "decompression bomb (20000x20000 PNG)": jsonl(img(lambda r: png_header(r / "images" / "b.png", 20_000, 20_000))),
    "PNG text-chunk bomb": jsonl(img(lambda r: png_header(r / "images" / "t.png", 8, 8, text_bomb_chunk()))),
    "SVG with script": jsonl(img(lambda r: write(r / "images" / "s.svg", b"<svg><script>alert(1)</script></svg>"))),
    "image path is a folder": jsonl(lambda r: {"image_path": str((r / "images").resolve())}),
    "absolute image path outside": jsonl(img(outside)),
    "../ image path": jsonl(lambda r: {"image_path": "../" + r.name + "-outside/x.jpg"} if outside(r) else {}),
    "image symlinked from outside": jsonl(img(symlink_out)),
    "NUL byte in image path": jsonl(lambda r: {"image_path": "images/a\x00.jpg"}),
    "CSV field over the csv module's limit": csv_rows(["big", "x" * 200_000, "1", "x.jpg"]),
    "CSV unbalanced quote": csv_rows('q1,"Red Dress,10,x.jpg\n'),
    "CSV NUL byte": csv_rows("n1,Red\x00Dress,10,x.jpg\n"),
}


def run_class(builder: Builder) -> tuple[int, int, int, str | None, Counter]:
    """(hostile records, accepted, quarantined, crash, reasons) of one class; the clean record is not counted."""
    with tempfile.TemporaryDirectory(prefix="pl-bad-") as tmp:
        root = Path(tmp) / "cat"
        root.mkdir()
        path, n = builder(root)
        try:
            result = ingest(path, CatalogConfig(), workers=2, progress=False)
        except Exception as exc:  # the benchmark counts crashes: it must not stop at the first
            return n, 0, 0, f"{type(exc).__name__}: {str(exc)[:80]}", Counter()
        ids = result.products.column("product_id").to_pylist()
        for text in result.products.column("title").to_pylist() + result.products.column("description").to_pylist():
            assert "<" not in (text or "") or ">" not in (text or ""), text
            assert not any(unicodedata.category(c) == "Cf" for c in text or ""), text
        reasons = Counter(result.quarantine.column("reason").to_pylist())
        clean = int("clean-0" in ids)
        return n, len(ids) - clean, result.quarantine.num_rows, None, reasons


def main() -> None:
    print(f"{'class':<40} {'records':>7} {'accepted':>8} {'quarantined':>11} {'lost':>4}  reasons / crash")
    totals = Counter()
    for name, builder in CLASSES.items():
        n, accepted, quarantined, crash, reasons = run_class(builder)
        lost = n - accepted - quarantined if crash is None else n
        totals.update(records=n, accepted=accepted, quarantined=quarantined, lost=lost, crashes=int(crash is not None))
        detail = crash or ", ".join(f"{r} {c}" for r, c in sorted(reasons.items())) or "-"
        print(f"{name:<40} {n:>7} {accepted:>8} {quarantined:>11} {lost:>4}  {detail}")
    print(f"\n{len(CLASSES)} classes, {totals['records']} hostile records: {totals['accepted']} accepted, "
          f"{totals['quarantined']} quarantined, {totals['lost']} lost, {totals['crashes']} crashes")
    sys.exit(1 if totals["lost"] or totals["crashes"] else 0)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
