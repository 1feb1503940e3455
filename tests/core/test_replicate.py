"""benchmarks/replicate.py: a replicated catalogue written as ingest's input reads back as the same products."""
from __future__ import annotations

from pathlib import Path

from replicate import replicate, write_raw
from testlib import make_image, write_jsonl

from pinlanding.collections.config import CatalogConfig
from pinlanding.collections.ingest import ingest


def test_raw_copies_ingest_with_fresh_ids_and_hashes(tmp_path: Path) -> None:
    rows = [{"product_id": pid, "title": f"Product {pid}", "description": "desc", "merchant_tags": "A,B",
             "brand": "Acme", "price": "10.5", "image_path": str(make_image(tmp_path / "images" / f"{pid}.jpg"))}
            for pid in ("a", "b")]
    base = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(), progress=False).products
    big = replicate(base, 5)
    write_raw(big, tmp_path / "big" / "input.parquet")
    cfg = CatalogConfig(format="parquet", image_root=str(tmp_path / "images"))
    again = ingest(tmp_path / "big" / "input.parquet", cfg, progress=False)
    assert again.quarantine.num_rows == 0
    assert again.products.column("product_id").to_pylist() == ["a-0", "b-0", "a-1", "b-1", "a-2"]
    assert len(set(again.products.column("content_hash").to_pylist())) == 5
    assert again.products.column("title").to_pylist() == big.column("title").to_pylist()
    assert again.products.column("merchant_tags").to_pylist() == big.column("merchant_tags").to_pylist()
    assert again.products.column("description").to_pylist()[2] == "desc Lot 1."
