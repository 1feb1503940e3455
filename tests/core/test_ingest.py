"""Catalogue ingestion: readers, normalization and every bad-input case ending in quarantine."""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from testlib import make_image, require_myntra, write_jsonl

from pinlanding.collections import schemas
from pinlanding.collections.config import CatalogConfig
from pinlanding.collections.ingest import field_text, ingest


def _row(pid: str, tmp: Path, **over) -> dict:
    img = make_image(tmp / "images" / f"{pid}.jpg")
    row = {"product_id": pid, "title": f"Product {pid}", "description": "desc", "merchant_tags": "A,B",
           "brand": "Acme", "price": "10.5", "image_path": str(img)}
    row.update(over)
    return row


def _reasons(result) -> dict[str, str]:
    return dict(zip(result.quarantine.column("product_id").to_pylist(), result.quarantine.column("reason").to_pylist()))


def test_clean_catalog_is_fully_accepted(tiny_catalog: Path) -> None:
    result = ingest(tiny_catalog, CatalogConfig(), progress=False)
    assert result.format == "jsonl"
    assert result.products.num_rows == 6 and result.quarantine.num_rows == 0
    assert result.products.schema.equals(schemas.PRODUCTS)
    row = result.products.slice(0, 1).to_pylist()[0]
    assert row["merchant_tags"] == ["Dresses", "Casual Wear"]
    assert row["price"] == 999.0 and row["currency"] == "INR"
    assert Path(row["image_path"]).is_absolute() and Path(row["image_path"]).exists()
    assert len(row["content_hash"]) == 64


@pytest.mark.parametrize(
    "override, reason",
    [
        ({"title": "   "}, "empty_title"),
        ({"title": None}, "empty_title"),
        ({"price": "ten rupees"}, "bad_price"),
        ({"price": -5}, "bad_price"),
        ({"price": "NaN"}, "bad_price"),
        ({"title": "x" * 5000}, "title_too_long"),
        ({"merchant_tags": [f"t{i}" for i in range(500)]}, "too_many_tags"),
        ({"image_path": "images/does-not-exist.jpg"}, "missing_image"),
        ({"image_path": ""}, "missing_image"),
    ],
)
def test_bad_records_are_quarantined_with_reason(tmp_path: Path, override: dict, reason: str) -> None:
    rows = [_row("good", tmp_path), _row("bad", tmp_path, **override)]
    result = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(), progress=False)
    assert result.products.column("product_id").to_pylist() == ["good"]
    assert _reasons(result) == {"bad": reason}
    assert result.summary()["quarantine_reasons"] == {reason: 1}


def test_corrupt_and_truncated_images(tmp_path: Path) -> None:
    rows = [_row("ok", tmp_path), _row("garbage", tmp_path), _row("trunc", tmp_path)]
    (tmp_path / "images" / "garbage.jpg").write_bytes(b"this is not a jpeg at all")
    truncated = make_image(tmp_path / "images" / "trunc.jpg", size=(200, 200))
    truncated.write_bytes(truncated.read_bytes()[:300])
    result = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(), progress=False)
    assert result.products.column("product_id").to_pylist() == ["ok"]
    assert _reasons(result) == {"garbage": "corrupt_image", "trunc": "corrupt_image"}


def test_duplicate_ids_keep_the_first_and_quarantine_the_rest(tmp_path: Path) -> None:
    rows = [_row("a", tmp_path, title="first"), _row("a", tmp_path, title="second"), _row("b", tmp_path)]
    result = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(), progress=False)
    assert result.products.column("title").to_pylist() == ["first", "Product b"]
    q = result.quarantine.to_pylist()
    assert [(r["product_id"], r["reason"], r["source_row"]) for r in q] == [("a", "duplicate_id", 1)]
    assert "source row 0" in q[0]["detail"]


def test_duplicate_ids_are_found_across_parts(tmp_path: Path) -> None:
    """The ids seen live outside the chunk: a duplicate three parts after its first use is still caught."""
    rows = [_row(pid, tmp_path) for pid in ("a", "b", "c", "d", "b", "e", "a")]
    result = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(part_rows=1), progress=False)
    assert result.products.column("product_id").to_pylist() == ["a", "b", "c", "d", "e"]
    q = result.quarantine.to_pylist()
    assert [(r["product_id"], r["source_row"]) for r in q] == [("b", 4), ("a", 6)]
    assert ["source row 1" in q[0]["detail"], "source row 0" in q[1]["detail"]] == [True, True]


def test_invalid_utf8_and_unparseable_lines_do_not_stop_the_file(tmp_path: Path) -> None:
    good = json.dumps(_row("good", tmp_path)).encode()
    bad_bytes = json.dumps(_row("latin", tmp_path, title="Caf\u00e9 Shirt")).encode().replace(b"Caf\\u00e9", b"Caf\xe9")
    path = tmp_path / "c.jsonl"
    path.write_bytes(good + b"\n" + bad_bytes + b"\n" + b"{not json\n" + b"[1, 2]\n")
    result = ingest(path, CatalogConfig(), progress=False)
    assert result.products.column("product_id").to_pylist() == ["good"]
    reasons = result.quarantine.column("reason").to_pylist()
    assert reasons == ["bad_encoding", "unparseable", "unparseable"]
    # the raw text of the bad record is kept, readable
    assert "Caf" in result.quarantine.column("raw")[0].as_py()


def test_missing_id_and_hostile_text(tmp_path: Path) -> None:
    hostile = '<script>alert("x")</script>Summer <b>Dress</b> \u202e\x00 &amp; 👗 Кофта'
    rows = [_row("", tmp_path), _row("h", tmp_path, title=hostile, description="<img src=x onerror=alert(1)>Nice")]
    result = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(), progress=False)
    assert result.quarantine.column("reason").to_pylist() == ["missing_id"]
    product = result.products.to_pylist()[0]
    assert "<" not in product["title"] and "\x00" not in product["title"]
    assert product["title"].startswith('alert("x")Summer Dress') and "👗 Кофта" in product["title"]
    assert product["description"] == "Nice"


def test_long_descriptions_are_truncated_not_lost(tmp_path: Path) -> None:
    rows = [_row("a", tmp_path, description="word " * 5000)]
    result = ingest(write_jsonl(tmp_path / "c.jsonl", rows), CatalogConfig(max_description_chars=100), progress=False)
    assert len(result.products.column("description")[0].as_py()) <= 100


def test_content_hash_tracks_fields_and_image_bytes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [_row("a", tmp_path), _row("b", tmp_path)])
    first = dict(zip(*ingest(path, CatalogConfig(), progress=False).products.select(["product_id", "content_hash"])
                     .to_pydict().values()))
    make_image(tmp_path / "images" / "a.jpg", color=(1, 2, 3))  # same path, new bytes
    second = dict(zip(*ingest(path, CatalogConfig(), progress=False).products.select(["product_id", "content_hash"])
                      .to_pydict().values()))
    assert first["b"] == second["b"] and first["a"] != second["a"]


def test_csv_and_parquet_with_field_mapping(tmp_path: Path) -> None:
    img = make_image(tmp_path / "img" / "1.jpg")
    rec = {"sku": "1", "name": "Blue Jeans", "about": "denim", "tags": "Jeans|Men", "maker": "Levi", "cost": "1,299",
           "photo": "img/1.jpg"}
    mapping = {"product_id": "sku", "title": "name", "description": "about", "merchant_tags": "tags",
               "brand": "maker", "price": "cost", "image_path": "photo"}
    cfg = CatalogConfig(field_mapping=mapping, tags_separator="|", currency="USD")
    with open(tmp_path / "c.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rec))
        writer.writeheader()
        writer.writerow(rec)
    pq.write_table(pa.Table.from_pylist([rec]), tmp_path / "c.parquet")
    for name, fmt in (("c.csv", "csv"), ("c.parquet", "parquet")):
        result = ingest(tmp_path / name, cfg, progress=False)
        assert result.format == fmt
        row = result.products.to_pylist()[0]
        assert (row["product_id"], row["title"], row["merchant_tags"], row["price"], row["currency"]) == \
            ("1", "Blue Jeans", ["Jeans", "Men"], 1299.0, "USD")
        assert row["image_path"] == str(img.resolve())
    with pytest.raises(ValueError, match="unknown fields"):
        ingest(tmp_path / "c.csv", CatalogConfig(field_mapping={"colour": "x"}), progress=False)


def _myntra_obj(pid: int) -> dict:
    return {"id": pid, "productDisplayName": f"Roadster Men Blue Shirt {pid}", "brandName": "Roadster",
            "price": 1299, "discountedPrice": 649, "descriptors": {"description": "<p>Blue <b>shirt</b></p>"},
            "displayCategories": "Casual Wear,Sale", "baseColour": "Blue", "articleType": "Shirts",
            "gender": "Men", "articleAttributes": {"Pattern": "Solid"}}


def test_myntra_layouts_read_inputs_only(tmp_path: Path) -> None:
    root = tmp_path / "myntra"
    make_image(root / "images" / "1.jpg")
    make_image(root / "images" / "2.jpg")
    with gzip.open(root / "styles.jsonl.gz", "wt") as f:
        for pid in (1, 2, 3):  # 3 has no image
            f.write(json.dumps(_myntra_obj(pid)) + "\n")
    result = ingest(root, CatalogConfig(), progress=False)
    assert result.format == "myntra"
    assert result.products.column("product_id").to_pylist() == ["1", "2"]
    assert _reasons(result) == {"3": "missing_image"}
    row = result.products.to_pylist()[0]
    assert row["price"] == 649.0 and row["description"] == "Blue shirt"
    assert row["merchant_tags"] == ["Casual Wear", "Sale"]
    flat = json.dumps(result.products.to_pylist())
    assert "Shirts" not in flat and "Solid" not in flat  # ground-truth labels are never read

    kaggle = tmp_path / "kaggle"
    make_image(kaggle / "images" / "1.jpg")
    (kaggle / "styles").mkdir(parents=True)
    (kaggle / "styles" / "1.json").write_text(json.dumps({"data": _myntra_obj(1)}))
    (kaggle / "styles" / "2.json").write_text("{broken")
    result = ingest(kaggle, CatalogConfig(), progress=False)
    assert result.products.column("brand").to_pylist() == ["Roadster"]
    assert result.quarantine.column("reason").to_pylist() == ["unparseable"]

    csv_root = tmp_path / "csv"
    make_image(csv_root / "images" / "7.jpg")
    (csv_root / "styles.csv").write_text("id,gender,articleType,productDisplayName\n7,Men,Shirts,Blue Shirt\n")
    result = ingest(csv_root, CatalogConfig(), progress=False)
    assert result.products.column("title").to_pylist() == ["Blue Shirt"]


def test_unknown_layout_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="cannot tell the format"):
        ingest(tmp_path, CatalogConfig(), progress=False)
    with pytest.raises(FileNotFoundError):
        ingest(tmp_path / "nope", CatalogConfig(), progress=False)


def test_clean_text_keeps_other_scripts_and_drops_controls() -> None:
    assert field_text("  Kurta\u00a0 कुर्ता \x07 ", "title") == "Kurta कुर्ता"
    assert field_text("Tom &amp; Jerry", "title") == "Tom & Jerry"
    assert field_text(None, "title") == ""


@pytest.mark.slow
def test_real_myntra_catalogue_ingests_completely() -> None:
    root = require_myntra()
    result = ingest(root, CatalogConfig(), progress=False)
    summary = result.summary()
    assert summary["products"] + summary["quarantined"] == 30718
    assert summary["products"] >= 30000
    assert len(result.products.column("product_id").unique()) == result.products.num_rows
    assert set(result.products.schema.names) == set(schemas.PRODUCTS.names)


def test_a_relative_catalogue_path_finds_its_images(tmp_path: Path, monkeypatch) -> None:
    make_image(tmp_path / "data" / "shop" / "images" / "1.jpg")
    with gzip.open(tmp_path / "data" / "shop" / "styles.jsonl.gz", "wt") as f:  # the Myntra layout
        f.write(json.dumps({"id": 1, "productDisplayName": "Red Dress", "brandName": "Acme", "price": 10,
                            "displayCategories": "Casual Wear"}) + "\n")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    result = ingest(Path("../data/shop"), CatalogConfig(), progress=False)
    assert result.format == "myntra" and result.quarantine.num_rows == 0
    assert result.products.column("image_path")[0].as_py() == str((tmp_path / "data" / "shop" / "images" / "1.jpg").resolve())


def test_worker_processes_give_the_same_parts_as_one_process(tmp_path: Path, monkeypatch) -> None:
    """Batches checked by worker processes come back in catalogue order: the same products, parts and quarantine
    (duplicates across batches, bad fields, corrupt and missing photos) as checking every record here."""
    from pinlanding.collections import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "BATCH_RECORDS", 7)  # many batches from a small catalogue
    rows = [_row(f"p{i}", tmp_path) for i in range(40)]
    rows[5] = _row("p1", tmp_path)  # a duplicate in the first batch
    rows[30] = _row("p12", tmp_path)  # and one several batches after its first use
    rows[9]["title"] = ""  # a field error
    rows[14]["image_path"] = str(tmp_path / "absent.jpg")  # a missing photo
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    rows[21]["image_path"] = str(tmp_path / "bad.jpg")  # a corrupt one
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    cfg = CatalogConfig(part_rows=6)

    def parts(workers: int) -> list[tuple[list, list]]:
        _, chunks = ingest_module.ingest_chunks(path, cfg, workers=workers, progress=False)
        return [(c.products.to_pylist(), c.quarantine.to_pylist()) for c in chunks]

    inline, pooled = parts(1), parts(2)
    assert pooled == inline
    quarantined = [(r["source_row"], r["reason"]) for _, q in inline for r in q]
    assert quarantined == [(5, "duplicate_id"), (9, "empty_title"), (14, "missing_image"), (21, "corrupt_image"),
                           (30, "duplicate_id")]
    assert sum(len(p) for p, _ in inline) == 35 and all(len(p) <= 6 for p, _ in inline)


def test_default_workers_are_the_usable_cores_up_to_the_cap(monkeypatch) -> None:
    from pinlanding.collections import ingest as ingest_module

    monkeypatch.setattr(ingest_module.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert ingest_module.default_workers() == ingest_module.MAX_WORKERS
    monkeypatch.setattr(ingest_module.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert ingest_module.default_workers() == 1
