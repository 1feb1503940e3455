"""The extract stage: outputs for every product, the result cache, crash safety, Ray, the real catalogue."""
from __future__ import annotations

import gzip
import json
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from testlib import require_myntra, split_into_parts
from extract_fixtures import fashion_rows, write_products

from pinlanding.collections import parts
from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import Pipeline, call_stage
from pinlanding.collections.schemas import ATTRIBUTES, EXTRACTION_FAILURES, PRODUCTS
from pinlanding.vocab.extract import ResultCache, run_extract
from pinlanding.vocab.extractors import RESULT_SCHEMA, create_extractor
from pinlanding.vocab.extractors.embedded import EmbeddedExtractor

LOCAL = ["extract.engine=local", "extract.embedded.use_embeddings=false", "extract.batch_size=8"]


def by_product(layout: RunLayout) -> dict[str, dict[str, set[str]]]:
    out: dict[str, dict[str, set[str]]] = {}
    for r in read_table(layout.attributes, ATTRIBUTES).to_pylist():
        out.setdefault(r["product_id"], {}).setdefault(r["key"], set()).add(r["value"])
    return out


def test_writes_attributes_failures_and_summary_for_every_product(tmp_path: Path) -> None:
    layout = write_products(tmp_path / "run", fashion_rows(tmp_path))
    counts = call_stage(run_extract, load_config(overrides=LOCAL), layout)
    assert counts["products"] == 25 and counts["extracted"] == 25 and counts["failures"] == 0
    got = by_product(layout)
    assert set(got) == set(read_table(layout.products, PRODUCTS)["product_id"].to_pylist())
    assert got["shoes0"]["category"] == {"casual shoes", "shoes"} and got["kurta1"]["category"] == {"kurta"}
    assert got["kurta1"]["color"] == {"red"} and got["shirt2"]["color"] == {"blue"}
    assert got["handbag0"]["gender"] == {"women"} and got["shirt0"]["pattern"] == {"striped"}
    assert got["shirt0"]["material"] == {"cotton"} and got["shirt0"]["brand"] == {"acme"}
    assert read_table(layout.dir("attributes") / "failures.parquet", EXTRACTION_FAILURES).num_rows == 0
    summary = json.loads((layout.dir("attributes") / "summary.json").read_text())
    assert summary["products"] == 25 and summary["failures"]["products"] == 0
    assert summary["keys"]["category"]["distinct_values"] == 6  # 5 types + the "shoes" head
    assert summary["attributes_per_product"]["products_without_attributes"] == 0
    assert summary["identity"]["backend"] == "embedded"
    steps = summary["seconds"]["passes"]  # the stage times its own steps (bench_extract prints them)
    assert set(steps) == {"setup", "cache lookup", "extraction job", "cache compaction", "resolve",
                           "refine statistics 1", "refine statistics 2", "refine and write", "commit and failures"}
    assert sum(steps.values()) <= summary["seconds"]["total"] + 0.1


def test_parted_catalogue_gives_the_same_attributes_parted_like_it(tmp_path: Path) -> None:
    """Phrase counts and neighbour votes (MiniLM on) are catalogue-wide: 4 parts give what 1 part gives."""
    rows = fashion_rows(tmp_path)
    rows.append({"product_id": "q", "title": "Acme Black Striped Sunglasses Zorblax"})  # no gender, odd type
    cfg = load_config(overrides=[*LOCAL, "extract.embedded.use_embeddings=true", "extract.embedded.knn_k=3",
                                 "extract.embedded.knn_min_similarity=0.2"])
    whole = write_products(tmp_path / "whole", rows)
    call_stage(run_extract, cfg, whole)
    parted = write_products(tmp_path / "parted", rows)
    names = split_into_parts(parted.products, 7)
    counts = call_stage(run_extract, cfg, parted)
    assert counts["parts"] == 4 and parts.part_names(parted.attributes) == names
    for name, part in parts.iter_parts(parted.attributes, ATTRIBUTES):
        catalog = parts.read_part(parted.products, name, PRODUCTS)["product_id"].to_pylist()
        assert set(part["product_id"].to_pylist()) == set(catalog)
    rows_of = {}
    for label, layout in (("whole", whole), ("parted", parted)):
        rows_of[label] = sorted(tuple(r.values()) for r in read_table(layout.attributes, ATTRIBUTES).to_pylist())
    assert rows_of["parted"] == rows_of["whole"]
    assert any(r[3] == "neighbors" for r in rows_of["whole"])  # the vote ran
    summaries = [json.loads((l.dir("attributes") / "summary.json").read_text()) for l in (whole, parted)]
    for s in summaries:
        s.pop("seconds")
    assert summaries[0] == summaries[1]


def test_per_product_inputs_are_never_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = write_products(tmp_path / "run", fashion_rows(tmp_path))
    split_into_parts(layout.products, 6)

    def refuse(*args, **kwargs):
        raise AssertionError(f"read whole: {args[0] if args else kwargs}")

    monkeypatch.setattr(parts, "read_all", refuse)
    monkeypatch.setattr(ResultCache, "load", refuse)
    cfg = load_config(overrides=LOCAL)
    assert call_stage(run_extract, cfg, layout)["extracted"] == 25
    assert call_stage(run_extract, cfg, layout)["cached"] == 25  # the lookup path too
    assert sum(p.rows for p in parts.list_parts(layout.attributes)) > 25


def test_rerun_extracts_only_new_or_changed_products(tmp_path: Path) -> None:
    rows = fashion_rows(tmp_path)
    layout = write_products(tmp_path / "run", rows)
    cfg = load_config(overrides=LOCAL)
    call_stage(run_extract, cfg, layout)
    assert call_stage(run_extract, cfg, layout)["extracted"] == 0
    rows[0]["title"] = "Acme Men Green Striped Shirt"  # changed content -> new hash
    rows.append({**rows[1], "product_id": "new1", "title": "Acme Women Yellow Kurta"})
    layout = write_products(tmp_path / "run", rows)
    counts = call_stage(run_extract, cfg, layout)
    assert counts["extracted"] == 2 and counts["cached"] == 24
    got = by_product(layout)
    assert got["shirt0"]["color"] >= {"green"} and got["new1"]["color"] >= {"yellow"}
    # another backend configuration (a different model) has its own cache entries
    other = load_config(overrides=[*LOCAL, "extract.embedded.use_embeddings=true",
                                   "extract.embedded.sentence_model=/nonexistent-model"])
    ident = create_extractor(other.extract).identity()
    assert ResultCache(layout.dir("attributes") / "cache", ident).load().num_rows == 0


def test_a_crash_loses_at_most_the_batch_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = write_products(tmp_path / "run", fashion_rows(tmp_path))
    cfg = load_config(overrides=LOCAL)
    real_call = EmbeddedExtractor.__call__
    calls = {"n": 0}

    def dying(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_call(self, batch)

    monkeypatch.setattr(EmbeddedExtractor, "__call__", dying)
    with pytest.raises(KeyboardInterrupt):
        call_stage(run_extract, cfg, layout)
    assert not layout.attributes.exists()
    monkeypatch.setattr(EmbeddedExtractor, "__call__", real_call)
    counts = call_stage(run_extract, cfg, layout)
    assert counts["cached"] == 16 and counts["extracted"] == 9  # two batches of 8 survived


def test_cache_compaction_keeps_every_result(tmp_path: Path) -> None:
    layout = write_products(tmp_path / "run", fashion_rows(tmp_path))
    cfg = load_config(overrides=[*LOCAL, "extract.batch_size=2", "extract.compact_after_parts=5"])
    call_stage(run_extract, cfg, layout)
    cache = ResultCache(layout.dir("attributes") / "cache", create_extractor(cfg.extract).identity())
    assert len(cache.parts()) == 1 and cache.load().num_rows == 25
    assert call_stage(run_extract, cfg, layout)["extracted"] == 0


def test_lookup_reads_whole_only_the_row_groups_holding_a_wanted_hash(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    layout = write_products(tmp_path / "run", fashion_rows(tmp_path))
    cfg = load_config(overrides=[*LOCAL, "extract.batch_size=5", "extract.compact_after_parts=2"])
    call_stage(run_extract, cfg, layout)
    cache = ResultCache(layout.dir("attributes") / "cache", create_extractor(cfg.extract).identity())
    everything = cache.load()
    assert len(cache.parts()) == 1 and pq.ParquetFile(cache.parts()[0]).num_row_groups == 5  # one per batch
    newer = everything.slice(7, 1)  # a later file with a changed row for one hash: the newest wins
    newer = newer.set_column(newer.schema.get_field_index("raw"), "raw", pa.array(["newer"]))
    write_table(newer, tmp_path / "newer.parquet", RESULT_SCHEMA)
    wanted = pa.array(everything["content_hash"].to_pylist()[6:9])
    whole = []
    real = pq.ParquetFile.read_row_group

    def spy(self, i, columns=None, **kwargs):
        whole.append(columns != ["content_hash"])
        return real(self, i, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    got = cache.lookup(wanted, extra=[tmp_path / "newer.parquet"])
    assert got["content_hash"].to_pylist() == [wanted[0].as_py(), wanted[2].as_py(), wanted[1].as_py()]
    assert got["raw"].to_pylist()[2] == "newer" and got.slice(0, 2).equals(everything.slice(6, 3).take([0, 2]))
    assert sum(whole) == 2  # batch 2 (rows 5-9) of the cache and the extra file; batches 1, 3, 4, 5 only hashed
    assert cache.lookup(pa.array(["none"]), columns=["content_hash"]).num_rows == 0


def test_without_the_cache_results_go_through_fresh_files(tmp_path: Path) -> None:
    """With the cache on, this run's results are read back from it (fresh/ only holds what it does not keep)."""
    rows = fashion_rows(tmp_path)
    cached = write_products(tmp_path / "cached", rows)
    call_stage(run_extract, load_config(overrides=LOCAL), cached)
    uncached = write_products(tmp_path / "uncached", rows)
    assert call_stage(run_extract, load_config(overrides=[*LOCAL, "extract.cache=false"]), uncached)["extracted"] == 25
    assert not (uncached.dir("attributes") / "cache").exists()
    assert read_table(uncached.attributes, ATTRIBUTES).equals(read_table(cached.attributes, ATTRIBUTES))


def test_unknown_backend_lists_the_known_ones(tmp_path: Path) -> None:
    layout = write_products(tmp_path / "run", fashion_rows(tmp_path, 1))
    with pytest.raises(ValueError, match=r"unknown extractor 'nope'; known: \['embedded', 'openai'"):
        call_stage(run_extract, load_config(overrides=["extract.backend=nope"]), layout)


@pytest.mark.slow
@pytest.mark.parametrize("part_tasks", [False, True])
def test_ray_job_matches_the_local_run(tmp_path: Path, part_tasks: bool) -> None:
    """With ``ray.part_tasks`` the per-part passes run as Ray tasks in the job's Ray session: same rows."""
    rows = fashion_rows(tmp_path)
    local = write_products(tmp_path / "local", rows)
    split_into_parts(local.products, 9)
    call_stage(run_extract, load_config(overrides=LOCAL), local)
    remote = write_products(tmp_path / "ray", rows)
    split_into_parts(remote.products, 9)
    cfg = load_config(overrides=["extract.engine=ray", "extract.embedded.use_embeddings=false", "extract.batch_size=8",
                                 "ray.num_cpus=2", f"ray.part_tasks={str(part_tasks).lower()}",
                                 "ray.object_store_memory=100000000"])
    counts = call_stage(run_extract, cfg, remote)
    assert counts["extracted"] == 25 and counts["parts"] == 3
    assert ResultCache(remote.dir("attributes") / "cache", create_extractor(cfg.extract).identity()).parts()
    assert read_table(remote.attributes, ATTRIBUTES).equals(read_table(local.attributes, ATTRIBUTES))


@pytest.mark.slow
def test_part_tasks_share_one_encoder_actor_and_match_the_local_run(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With embeddings, the refine tasks' encodes go to one named actor (created for a GPU model: the
    driver is made to see one here; the actor itself runs MiniLM on the CPU). Same rows as in-process."""
    import ray

    from pinlanding.collections import engines
    from pinlanding.vocab.extractors import catalogue

    rows = fashion_rows(tmp_path)
    embed = ["extract.embedded.use_embeddings=true", "extract.embedded.device=cpu", "extract.batch_size=8"]
    local = write_products(tmp_path / "local", rows)
    split_into_parts(local.products, 9)
    call_stage(run_extract, load_config(overrides=[*embed, "extract.engine=local"]), local)
    remote = write_products(tmp_path / "ray", rows)
    split_into_parts(remote.products, 9)
    monkeypatch.setattr(engines, "torch_device", lambda requested="auto": "cuda")  # the driver's check only
    names = []
    real_shared = catalogue.CatalogueRefiner.shared

    def spy(self):
        with real_shared(self):
            names.append(self._encoder)
            assert ray.get_actor(self._encoder) is not None
            yield

    monkeypatch.setattr(catalogue.CatalogueRefiner, "shared", contextmanager(spy))

    def not_here(*args, **kwargs):
        raise AssertionError("the driver encoded in-process (the spare voters of a small catalogue)")

    monkeypatch.setattr(catalogue, "encode", not_here)  # this process only: the actor imports its own
    cfg = load_config(overrides=[*embed, "extract.engine=ray", "ray.num_cpus=2", "ray.part_tasks=true",
                                 "ray.object_store_memory=100000000"])
    assert call_stage(run_extract, cfg, remote)["parts"] == 3
    assert len(names) == 1 and names[0].startswith("pinlanding-refine-encoder-")
    assert read_table(remote.attributes, ATTRIBUTES).equals(read_table(local.attributes, ATTRIBUTES))


@pytest.mark.slow
def test_real_catalogue_sample(tmp_path: Path) -> None:
    """300 real Myntra products through ingest and the stage (MiniLM on, local engine)."""
    myntra = require_myntra()
    sample = tmp_path / "myntra"
    sample.mkdir()
    with gzip.open(myntra / "styles.jsonl.gz", "rt") as src, gzip.open(sample / "styles.jsonl.gz", "wt") as dst:
        for i, line in enumerate(src):
            if i >= 300:
                break
            dst.write(line)
    (sample / "images").symlink_to(myntra / "images")
    cfg = load_config(overrides=["extract.engine=local"])
    layout = RunLayout(tmp_path / "run")
    Pipeline(cfg, layout, catalog=sample).run(["ingest", "extract"])
    attrs = pq.read_table(layout.attributes).to_pylist()
    n = read_table(layout.products, PRODUCTS).num_rows
    assert n == 300 and len({r["product_id"] for r in attrs}) >= 295
    keys = {r["key"] for r in attrs}
    assert {"category", "color", "gender", "brand", "pattern", "material"} <= keys
    summary = json.loads((layout.dir("attributes") / "summary.json").read_text())
    assert summary["keys"]["category"]["coverage"] > 0.9 and summary["keys"]["color"]["coverage"] > 0.95
    assert all(r["value"] == r["value"].lower() and r["key"] == r["key"].lower() for r in attrs)
