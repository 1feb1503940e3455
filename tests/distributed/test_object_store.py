"""Artifact I/O on a real S3 endpoint (moto's server on loopback): atomic writes, reads, digests, listings,
the review decisions file, and Spark executors reading Parquet from the bucket themselves."""
from __future__ import annotations

import pyarrow as pa
import pytest
from upath import UPath

from pinlanding.collections.artifacts import (as_path, atomic_path, is_remote, list_files, read_json, read_schema,
                                              read_table, tree_digest, write_json, write_table, write_text)
from pinlanding.collections.layout import RunLayout

from object_store import stop_active_spark  # noqa: I001 - beside this file

SCHEMA = pa.schema([pa.field("product_id", pa.string(), nullable=False), pa.field("score", pa.float32()),
                    pa.field("tags", pa.list_(pa.string()))])


def table(n: int = 5) -> pa.Table:
    return pa.table({"product_id": [f"p{i}" for i in range(n)], "score": [i / 2 for i in range(n)],
                     "tags": [["a", "ü"] if i % 2 else [] for i in range(n)]}, schema=SCHEMA)


def keys(url: str) -> list[str]:
    fs = UPath(url).fs
    fs.invalidate_cache()
    return sorted(fs.find(UPath(url).path))


def test_artifacts_round_trip_on_s3(s3) -> None:
    root = s3.bucket() + "/runs/a"
    path = as_path(root) / "catalog" / "products.parquet"
    assert is_remote(path) and isinstance(path, UPath)
    assert write_table(table(), path, SCHEMA) == path
    assert read_table(root + "/catalog/products.parquet", SCHEMA).equals(table())
    assert read_schema(path, SCHEMA).names == SCHEMA.names
    write_json(as_path(root) / "a.json", {"b": [1, "🙂"], "a": None})
    assert read_json(root + "/a.json") == {"a": None, "b": [1, "🙂"]}
    assert read_json(root + "/missing.json", default={"none": 1}) == {"none": 1}
    write_text(root + "/site/index.html", "<p>&amp;</p>")
    assert (as_path(root) / "site" / "index.html").read_text() == "<p>&amp;</p>"
    with pytest.raises(FileNotFoundError, match="run the stage that writes it"):
        read_table(root + "/nothing.parquet", SCHEMA)
    with pytest.raises(ValueError, match=r"lacks columns \['missing'\]"):
        read_schema(path, pa.schema([("missing", pa.string())]))
    assert keys(root) == sorted(f"{UPath(root).path}/{k}" for k in ("a.json", "catalog/products.parquet",
                                                                      "site/index.html"))  # no temp objects


def test_failed_write_leaves_the_previous_object_and_no_temp_files(s3, tmp_path) -> None:
    root = s3.bucket() + "/run"
    target = as_path(root) / "vocabulary" / "vocabulary.parquet"
    write_table(table(3), target, SCHEMA)
    temps = []
    with pytest.raises(RuntimeError, match="killed mid-write"):
        with atomic_path(target) as tmp:
            temps.append(tmp)
            tmp.write_bytes(b"PAR1 half a file")
            raise RuntimeError("killed mid-write")
    assert read_table(target, SCHEMA).equals(table(3))  # the old object, whole
    assert not temps[0].exists()  # the local spool file is gone
    with pytest.raises(RuntimeError):
        with atomic_path(as_path(root) / "new.json") as tmp:
            tmp.write_text("{")
            raise RuntimeError("killed")
    assert keys(root) == [f"{UPath(root).path}/vocabulary/vocabulary.parquet"]


def test_tree_digest_and_listing_on_s3(s3) -> None:
    root = as_path(s3.bucket() + "/run")
    folder = root / "attributes"
    write_table(table(4), folder / "attributes.parquet", SCHEMA)
    write_json(folder / "cache" / "part-1.json", {"n": 1})
    first = tree_digest(folder)
    write_table(table(4), folder / "attributes.parquet", SCHEMA)  # same bytes again
    assert tree_digest(folder) == first
    write_json(folder / ".hidden.json", {"ignored": True})
    assert tree_digest(folder) == first
    write_table(table(5), folder / "attributes.parquet", SCHEMA)
    second = tree_digest(folder)
    assert second != first
    write_json(folder / "cache" / "part-1.json", {"n": 2})
    assert tree_digest(folder) != second  # a change deep in the tree counts
    assert [p.name for p in list_files(folder / "cache", "part-*.json")] == ["part-1.json"]
    assert list_files(folder / "absent") == []


def test_run_layout_on_s3_creates_nothing_until_written(s3) -> None:
    url = s3.bucket() + "/runs/x"
    layout = RunLayout(url)
    assert layout.remote and str(layout.products) == url + "/catalog/products.parquet"
    layout.dir("feeds")
    assert keys(url) == []  # object stores have no folders to create
    local = RunLayout("file:///tmp/pinlanding-x")
    assert not local.remote and str(local.root) == "/tmp/pinlanding-x"


def test_review_decisions_append_and_read_on_s3(s3) -> None:
    from pinlanding.vocab.decisions import Decision, DecisionStore, decisions_path

    layout = RunLayout(s3.bucket() + "/run")
    store = DecisionStore(decisions_path(layout))
    assert store.read() == []
    store.append(Decision(action="reject", who="ana", key="color", value="Navy Blue"))
    store.append(Decision(action="rename", who="bo", key="color", value="navy", target="navy blue"))
    got = DecisionStore(str(layout.root) + "/review/decisions.jsonl").read()
    assert [(d.action, d.value) for d in got] == [("reject", "Navy Blue"), ("rename", "navy")]


@pytest.mark.slow
def test_spark_executors_read_parquet_from_s3_like_a_local_file(s3, tmp_path) -> None:
    import pyarrow.parquet as pq

    from pinlanding.collections.artifacts import arrow_source
    from pinlanding.collections.config import SparkConfig
    from pinlanding.collections.engines import spark_session
    from pinlanding.feeds.build import read_parquet

    big = table(1000)
    local = tmp_path / "t.parquet"
    pq.write_table(big, local, row_group_size=128)  # 8 row groups: 8 tasks
    remote = as_path(s3.bucket() + "/run/t.parquet")
    source, fs = arrow_source(remote)
    fs.put_file(str(local), source)
    stop_active_spark()
    spark = spark_session(SparkConfig(master="local[1]", shuffle_partitions=2, conf=s3.spark_conf()))
    try:
        from_s3 = read_parquet(spark, remote)
        from_disk = read_parquet(spark, local)
        assert from_s3.rdd.getNumPartitions() == 8
        assert from_s3.schema == from_disk.schema
        assert sorted(map(tuple, from_s3.collect())) == sorted(map(tuple, from_disk.collect()))
        assert from_s3.filter("score > 100").count() == big.num_rows - 201  # scores are i/2
    finally:
        spark.stop()
