"""The shared core: config loading, atomic artifacts, the registry, pinned model digests."""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from pinlanding.collections import models, schemas
from pinlanding.collections.artifacts import (as_path, atomic_path, is_remote, list_files, location, read_table,
                                              tree_digest, write_json, write_table)
from pinlanding.collections.config import DEFAULT_CONFIG, PipelineConfig, load_config
from pinlanding.collections.registry import Registry


def test_config_defaults_file_and_overrides(tmp_path: Path) -> None:
    cfg = load_config()
    assert cfg.spark.master == "local[*]" and cfg.ray.address is None
    extra = tmp_path / "c.yaml"
    extra.write_text("spark:\n  shuffle_partitions: 3\n")
    cfg = load_config(extra, ["ray.object_store_memory=123456789", "catalog.currency=EUR"])
    assert cfg.spark.shuffle_partitions == 3 and cfg.spark.master == "local[*]"
    assert cfg.ray.object_store_memory == 123456789 and cfg.catalog.currency == "EUR"


def test_the_models_are_the_defaults_and_the_yaml_only_what_differs() -> None:
    defaults = PipelineConfig().model_dump(mode="json")

    def same(tree: dict, base: dict, path: str = "") -> list[str]:
        out = []
        for key, value in tree.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict) and value:
                out += same(value, base[key], f"{path}{key}.")
            elif base.get(key) == value:
                out.append(path + key)
        return out

    assert same(yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}, defaults) == []  # no setting stated twice


def test_config_rejects_typos_and_bad_overrides(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shufle_partitions"):
        load_config(overrides=["spark.shufle_partitions=3"])
    with pytest.raises(ValueError, match="key.path=value"):
        load_config(overrides=["spark.master"])
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="catalog.format|format"):
        load_config(overrides=["catalog.format=xml"])


def test_cluster_config_points_at_engines() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "conf" / "cluster.yaml")
    assert cfg.ray.address and cfg.spark.master.startswith("spark://")


def test_write_table_is_atomic_and_typed(tmp_path: Path) -> None:
    path = tmp_path / "q.parquet"
    rows = [{"source_row": 1, "product_id": "a", "reason": "r", "detail": "d", "raw": "{}"}]
    write_table(pa.Table.from_pylist(rows), path, schemas.QUARANTINE)
    assert read_table(path, schemas.QUARANTINE).to_pylist() == rows
    # a failing write leaves the previous file intact and no temp files behind
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert read_table(path, schemas.QUARANTINE).to_pylist() == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.parquet"]
    with pytest.raises(FileNotFoundError, match="run the stage"):
        read_table(tmp_path / "none.parquet", schemas.QUARANTINE)


def test_tree_digest_changes_with_content(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    first = tree_digest(tmp_path)
    (tmp_path / "a").write_text("2")
    assert tree_digest(tmp_path) != first


def test_run_locations_local_paths_and_urls(tmp_path: Path) -> None:
    from upath import UPath

    assert as_path("runs/x") == Path("runs/x") and not is_remote("runs/x")
    assert as_path(f"file://{tmp_path}/r") == tmp_path / "r" and type(as_path(f"file://{tmp_path}")) is not UPath
    assert location("runs/x", absolute=True) == str(Path("runs/x").resolve())
    remote = as_path("s3://bucket/runs/x")
    assert is_remote(remote) and isinstance(remote, UPath) and str(remote / "a") == "s3://bucket/runs/x/a"
    assert location(remote, absolute=True) == "s3://bucket/runs/x"


def test_artifacts_on_a_non_local_filesystem(tmp_path: Path) -> None:
    import uuid

    root = as_path(f"memory://t/{uuid.uuid4().hex}")
    rows = [{"source_row": 1, "product_id": "a", "reason": "r", "detail": "🙂", "raw": "{}"}]
    write_table(pa.Table.from_pylist(rows), root / "q.parquet", schemas.QUARANTINE)
    assert read_table(root / "q.parquet", schemas.QUARANTINE).to_pylist() == rows
    with pytest.raises(RuntimeError):
        with atomic_path(root / "q.parquet") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert read_table(root / "q.parquet", schemas.QUARANTINE).to_pylist() == rows
    assert [p.name for p in list_files(root)] == ["q.parquet"]
    first = tree_digest(root)  # this store lists no checksums: digests hash the bytes
    write_json(root / "d" / "x.json", {"a": 1})
    assert tree_digest(root) != first


def test_registry_names_valid_choices() -> None:
    reg: Registry[object] = Registry("scorer")
    reg.register("strict")(dict)
    assert reg.create("strict", a=1) == {"a": 1}
    with pytest.raises(ValueError, match=r"unknown scorer 'x'; known: \['strict'\]"):
        reg.get("x")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("strict")(dict)


def test_packaged_model_passes_its_pinned_digests() -> None:
    path = models.packaged_minilm_path()
    assert (path / "model.safetensors").exists()
    assert models.resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == str(path)
    assert models.resolve_model_path("/some/local/model") == "/some/local/model"


def test_a_changed_model_file_stops_with_a_clear_error(tmp_path: Path) -> None:
    src = models.packaged_minilm_path()
    digests = models.PINNED_DIGESTS[models.MINILM]
    for name in digests:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src / name, tmp_path / name)
    assert models.verify_model_dir(tmp_path, digests) == tmp_path
    (tmp_path / "vocab.txt").unlink()
    (tmp_path / "vocab.txt").write_text("tampered")
    with pytest.raises(models.ModelIntegrityError, match="vocab.txt has SHA-256 .* reinstall"):
        models.verify_model_dir(tmp_path, digests)
    (tmp_path / "vocab.txt").unlink()
    with pytest.raises(models.ModelIntegrityError, match="missing"):
        models.verify_model_dir(tmp_path, digests)
