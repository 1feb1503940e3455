"""Ingest under hostile records (issue 20, defects 1, 4, 7, 8, 9 and 11): every record is accepted clean
or quarantined with a stable reason; nothing crashes."""
from __future__ import annotations

import os
import struct
import unicodedata
import zlib
from pathlib import Path

import pytest
from testlib import make_image, write_jsonl

from pinlanding.collections.config import CatalogConfig
from pinlanding.collections.ingest import ingest


def _row(pid, tmp: Path, **over) -> dict:
    img = make_image(tmp / "images" / f"{pid}.jpg")
    return {"product_id": pid, "title": f"Product {pid}", "brand": "Acme", "price": 10, "image_path": str(img), **over}


def _reasons(result) -> dict[str, str]:
    return dict(zip(result.quarantine.column("product_id").to_pylist(), result.quarantine.column("reason").to_pylist()))


def bomb_png(path: Path, side: int = 20_000) -> Path:
    """A valid PNG header claiming ``side`` x ``side`` pixels (Pillow refuses it as a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_quarantined_not_a_crash(tmp_path: Path) -> None:
    rows = [_row("ok", tmp_path), _row("bomb", tmp_path, image_path=str(bomb_png(tmp_path / "images" / "b.png")))]
    result = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(), progress=False)
    assert result.products.column("product_id").to_pylist() == ["ok"]
    assert _reasons(result) == {"bomb": "corrupt_image"}
    assert "DecompressionBombError" in result.quarantine.column("detail")[0].as_py()


def test_a_corrupt_image_quarantines_with_the_same_detail_every_run(tmp_path: Path) -> None:
    rows = [_row("ok", tmp_path), _row("bad", tmp_path)]
    (tmp_path / "images" / "bad.jpg").write_bytes(b"not an image at all")
    catalog = write_jsonl(tmp_path / "c.jsonl", rows)
    first, second = (ingest(catalog, CatalogConfig(), progress=False) for _ in range(2))
    detail = first.quarantine.column("detail")[0].as_py()
    assert " at 0x" not in detail and "object" not in detail  # no repr carrying a memory address
    assert first.quarantine.equals(second.quarantine) and first.products.equals(second.products)


def test_encoded_markup_and_invisible_characters_never_reach_stored_text(tmp_path: Path) -> None:
    hostile = "&lt;script&gt;alert(1)&lt;/script&gt;Red &amp;lt;b&amp;gt;Dress\u202e\u2066\u200b\ufeff"
    rows = [_row("h", tmp_path, title=hostile, brand="Ac\u200bme\u202e", description="&lt;img src=x&gt;Soft")]
    product = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(), progress=False).products.to_pylist()[0]
    for text in (product["title"], product["brand"], product["description"]):
        assert "<" not in text and ">" not in text
        assert not any(unicodedata.category(c) == "Cf" for c in text)
    assert product["title"] == "alert(1)Red Dress" and product["brand"] == "Acme" and product["description"] == "Soft"


def test_images_outside_the_catalogue_are_refused(tmp_path: Path) -> None:
    outside = make_image(tmp_path / "elsewhere" / "secret.jpg")
    cat = tmp_path / "cat"
    (cat / "images").mkdir(parents=True)
    os.symlink(outside, cat / "images" / "link.jpg")
    rows = [_row("ok", cat), _row("abs", cat, image_path=str(outside)),
            _row("up", cat, image_path="../elsewhere/secret.jpg"), _row("link", cat, image_path="images/link.jpg")]
    result = ingest(write_jsonl(cat / "c.jsonl", rows), CatalogConfig(), progress=False)
    assert result.products.column("product_id").to_pylist() == ["ok"]
    assert _reasons(result) == {"abs": "image_outside_catalog", "up": "image_outside_catalog",
                                "link": "image_outside_catalog"}
    allowed = ingest(cat / "c.jsonl", CatalogConfig(allow_external_images=True), progress=False)
    assert allowed.products.num_rows == 4  # the setting that allows it


@pytest.mark.parametrize("bad_id", [{"a": 1}, [1, 2], 1.5, True, None])
def test_ids_of_the_wrong_type_are_bad_id(tmp_path: Path, bad_id) -> None:
    rows = [_row("ok", tmp_path), {**_row("x", tmp_path), "product_id": bad_id}]
    result = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(), progress=False)
    assert result.products.column("product_id").to_pylist() == ["ok"]
    assert result.quarantine.column("reason").to_pylist() == ["missing_id" if bad_id is None else "bad_id"]


def test_a_text_only_catalogue_is_accepted(tmp_path: Path) -> None:
    rows = [{"product_id": f"t{i}", "title": f"Blue cotton shirt {i}", "merchant_tags": ["Shirts"]} for i in range(5)]
    catalog = write_jsonl(tmp_path / "c.jsonl", rows)
    result = ingest(catalog, CatalogConfig(verify_images=False), progress=False)
    assert result.products.num_rows == 5 and result.quarantine.num_rows == 0
    assert result.products.column("image_path").to_pylist() == [None] * 5
    strict = ingest(catalog, CatalogConfig(require_images=True), progress=False)
    assert set(strict.quarantine.column("reason").to_pylist()) == {"missing_image"}
    mixed = ingest(write_jsonl(tmp_path / "m.jsonl", [_row("a", tmp_path), _row("b", tmp_path, image_path="no.jpg")]),
                   CatalogConfig(require_images=False), progress=False)
    assert mixed.products.column("image_path").to_pylist()[1] is None  # a photo named but absent: text-only
