"""Partitioned artifacts: parts written one by one, published by one listing, read back part by part."""
from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pytest

from pinlanding.collections.artifacts import read_table, tree_digest, write_table
from pinlanding.collections.engines import map_parts
from pinlanding.collections.parts import (commit_parts, count_rows, is_parted, iter_parts, list_parts, part_name,
                                          read_part, write_part, write_parts)

SCHEMA = pa.schema([("product_id", pa.string()), ("n", pa.int64())])


def _table(ids: list[str]) -> pa.Table:
    return pa.table({"product_id": ids, "n": list(range(len(ids)))}, schema=SCHEMA)


def test_parts_round_trip_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "t.parquet"
    write_parts(folder, {part_name(1): _table(["c"]), part_name(0): _table(["a", "b"])}, SCHEMA)
    assert is_parted(folder) and count_rows(folder) == 3
    assert [name for name, _ in iter_parts(folder, SCHEMA)] == ["part-00000", "part-00001"]
    assert read_table(folder, SCHEMA).column("product_id").to_pylist() == ["a", "b", "c"]
    assert read_part(folder, "part-00001", SCHEMA).column("product_id").to_pylist() == ["c"]
    assert read_part(folder, "part-00007", SCHEMA).num_rows == 0  # a part with no rows for this artifact


def test_rewrite_keeps_names_stable_and_removes_stale_files(tmp_path: Path) -> None:
    folder = tmp_path / "t.parquet"
    write_parts(folder, {part_name(0): _table(["a"]), part_name(1): _table(["b"])}, SCHEMA)
    digest = tree_digest(folder)
    write_parts(folder, {part_name(0): _table(["a"]), part_name(1): _table(["b"])}, SCHEMA)
    assert tree_digest(folder) == digest  # same content, same file names: fingerprints stay stable
    write_parts(folder, {part_name(0): _table(["x"])}, SCHEMA)
    assert len(list(folder.glob("*.parquet"))) == 1 and read_table(folder, SCHEMA).num_rows == 1


def test_uncommitted_parts_are_refused_and_a_new_write_does_not_touch_the_old_files(tmp_path: Path) -> None:
    folder = tmp_path / "t.parquet"
    old = write_parts(folder, {part_name(0): _table(["a"])}, SCHEMA)
    new = write_part(folder, part_name(0), _table(["z"]), SCHEMA)  # a crash before commit_parts
    assert new.file != old[0].file
    assert read_table(folder, SCHEMA).column("product_id").to_pylist() == ["a"]  # still the committed content
    commit_parts(folder, [new], SCHEMA)
    assert read_table(folder, SCHEMA).column("product_id").to_pylist() == ["z"]
    unfinished = tmp_path / "u.parquet"
    write_part(unfinished, part_name(0), _table(["a"]), SCHEMA)
    with pytest.raises(FileNotFoundError, match="unfinished write"):
        read_table(unfinished, SCHEMA)
    with pytest.raises(ValueError, match="duplicate part names"):
        commit_parts(folder, [new, new], SCHEMA)


def test_a_single_file_artifact_reads_as_one_part(tmp_path: Path) -> None:
    path = write_table(_table(["a", "b"]), tmp_path / "one.parquet", SCHEMA)
    assert [(p.name, p.rows) for p in list_parts(path)] == [("part-00000", 2)]
    assert read_part(path, "part-00000", SCHEMA).num_rows == 2


def _count(folder: Path, name: str) -> int:
    return read_part(folder, name, SCHEMA).num_rows


def test_map_parts_runs_every_part_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "t.parquet"
    write_parts(folder, {part_name(i): _table([str(j) for j in range(i + 1)]) for i in range(3)}, SCHEMA)
    assert map_parts(functools.partial(_count, folder), [p.name for p in list_parts(folder)]) == [1, 2, 3]
