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


def test_a_run_copies_with_the_same_keys_in_every_artifact(tmp_path: Path) -> None:
    import pyarrow as pa

    from replicate import RUN_ARTIFACTS, replicate_run

    from pinlanding.collections.artifacts import read_table, write_table
    from pinlanding.collections.parts import list_parts
    from pinlanding.collections.schemas import ASSIGNMENTS, ATTRIBUTES, EMBEDDINGS, PRODUCTS, VISUAL_INDEX

    run = tmp_path / "run"
    rows = [{"product_id": pid, "title": f"Product {pid}", "description": "desc", "merchant_tags": "A",
             "brand": "Acme", "price": "1", "image_path": str(make_image(tmp_path / "images" / f"{pid}.jpg"))}
            for pid in ("a", "b")]
    products = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(), progress=False).products
    (run / "catalog").mkdir(parents=True)
    write_table(products, run / "catalog" / "products.parquet", PRODUCTS)
    hashes = dict(zip(*(products.column(c).to_pylist() for c in ("product_id", "content_hash"))))
    tables = {ATTRIBUTES: [{"product_id": "a", "key": "color", "value": "red"}],
              ASSIGNMENTS: [{"product_id": p, "key": "color", "value": "red", "confidence": 0.9} for p in "ab"],
              EMBEDDINGS: [{"product_id": p, "content_hash": hashes[p], "embedding": [1.0, 0.0]} for p in "ab"],
              VISUAL_INDEX: [{"product_id": p, "content_hash": hashes[p], "embedding": [1.0, 0.0]} for p in "ab"]}
    for name, schema in RUN_ARTIFACTS:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        write_table(pa.Table.from_pylist(tables[schema], schema=schema), run / name, schema)
    (run / "vocabulary").mkdir()
    (run / "vocabulary" / "vocabulary.parquet").write_bytes(b"v")
    (run / "config.yaml").write_text("run: {}\n")
    for name in ("catalog/quarantine.parquet", "attributes/failures.parquet", "assignments/failures.parquet"):
        (run / name).write_bytes(b"f")

    assert replicate_run(run, tmp_path / "big", copies=3) == 6
    big = tmp_path / "big"
    catalogue = read_table(big / "catalog" / "products.parquet", PRODUCTS)
    ids = catalogue.column("product_id").to_pylist()
    assert sorted(ids) == ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"]
    copied_hashes = dict(zip(ids, catalogue.column("content_hash").to_pylist()))
    graph = read_table(big / "assignments" / "assignments.parquet", ASSIGNMENTS)
    assert sorted(graph.column("product_id").to_pylist()) == sorted(ids)
    for part in ("catalog/products.parquet", "assignments/assignments.parquet"):  # copy r is part r of each
        assert [p.name for p in list_parts(big / part)] == ["part-00000", "part-00001", "part-00002"]
    assert read_table(big / "attributes" / "attributes.parquet", ATTRIBUTES).column("product_id").to_pylist() == [
        "a-0", "a-1", "a-2"]
    for schema, name in ((EMBEDDINGS, "embeddings"), (VISUAL_INDEX, "visual_index")):
        table = read_table(big / "assignments" / f"{name}.parquet", schema)
        assert {p: h for p, h in zip(*(table.column(c).to_pylist() for c in ("product_id", "content_hash")))} == \
            copied_hashes  # each copy's embedding is keyed by the copy's own content hash
    assert (big / "vocabulary" / "vocabulary.parquet").read_bytes() == b"v" and (big / "config.yaml").exists()
