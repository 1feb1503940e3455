"""Assignment part by part: the driver's stream grouping, and a parted catalogue gives the same graph."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
from testlib import split_into_parts
from tqdm import tqdm

from pinlanding.collections import parts
from pinlanding.collections.artifacts import read_table
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ASSIGNMENTS, ATTRIBUTES, EMBEDDINGS, PRODUCTS
from pinlanding.encoders.assign import collect_parts, counted_stream, run_assign, timed_stream
from pinlanding.encoders.index import embedding_matrix

from .conftest import tiny_config


def _batch(*tags: str) -> dict[str, np.ndarray]:
    return {"part": np.array(tags, dtype=object), "product_id": np.array([f"{t}{i}" for i, t in enumerate(tags)],
                                                                       dtype=object)}


def test_collect_parts_hands_over_each_part_as_soon_as_its_rows_are_in():
    finished: list[tuple[str, list[str]]] = []
    stream = [_batch("a", "a"), _batch("a", "b", "b"), _batch("c"), _batch("b")]
    collect_parts(stream, {"a": 3, "b": 3, "c": 1}, lambda name, cols: finished.append((name, list(cols["product_id"]))))
    assert finished == [("a", ["a0", "a1", "a0"]), ("c", ["c0"]), ("b", ["b1", "b2", "b0"])]


@pytest.mark.parametrize("expected, error", [({"a": 3}, "fewer rows"), ({"a": 1}, "duplicated")])
def test_collect_parts_refuses_lost_or_duplicated_rows(expected, error):
    with pytest.raises(RuntimeError, match=error):
        collect_parts([_batch("a", "a")], expected, lambda name, cols: None)


def test_the_progress_bar_counts_each_batchs_products_as_it_arrives():
    batches = [_batch("a", "a"), _batch("a", "b", "b"), _batch("c")]
    seen = []
    with tqdm(total=6, file=io.StringIO()) as bar:
        for batch in counted_stream(iter(batches), bar):
            seen.append((batch, bar.n))
    assert [b for b, _ in seen] == batches  # passed on unchanged, in order
    assert [n for _, n in seen] == [2, 5, 6]  # counted before the consumer works on the batch


def test_timed_stream_leaves_the_consumers_work_on_the_last_batch_out_of_the_steady_rate():
    now = [0.0]
    batches = [_batch(*"a" * 100), _batch(*"a" * 200), _batch(*"a" * 300)]

    def arriving():  # each batch takes the pipeline 1 s
        for batch in batches:
            now[0] += 1.0
            yield batch

    timing: dict[str, float] = {}
    for batch in timed_stream(arriving(), timing, clock=lambda: now[0]):
        now[0] += 0.5 if len(batch["product_id"]) < 300 else 4.0  # the consumer; the last part's write is long
    assert timing["first_batch_seconds"] == 1.0 and timing["last_batch_seconds"] == 4.0
    assert timing["pipeline_seconds"] == 8.0
    assert timing["steady_products_per_s"] == pytest.approx(500 / 3.0)  # 2nd and 3rd batch, arrivals 1 s .. 4 s
    assert timing["steady_products_per_s_incl_consumer"] == pytest.approx(500 / 7.0)
    empty: dict[str, float] = {}
    assert list(timed_stream(iter([]), empty, clock=lambda: 0.0)) == [] and empty["steady_products_per_s"] == 0.0


def _rows(layout: RunLayout) -> dict[tuple[str, str, str, str], float]:
    g = read_table(layout.assignments, ASSIGNMENTS)
    cols = [g.column(c).to_pylist() for c in ("product_id", "key", "value", "source", "confidence")]
    return {row[:4]: row[4] for row in zip(*cols)}


def _vectors(layout: RunLayout) -> dict[str, np.ndarray]:
    emb = read_table(layout.embeddings, EMBEDDINGS)
    return dict(zip(emb.column("product_id").to_pylist(), embedding_matrix(emb)))


def _refuse_whole_reads(monkeypatch) -> None:
    """Reading a part folder whole (read_table on a folder goes through read_all) or iterating it fails."""
    def refuse(folder, *args, **kwargs):
        raise AssertionError(f"{folder} read whole")
    monkeypatch.setattr(parts, "read_all", refuse)
    monkeypatch.setattr(parts, "iter_parts", refuse)


@pytest.mark.slow  # starts Ray twice
def test_assign_on_a_parted_catalogue_matches_one_part_and_is_co_partitioned(trained_run, tmp_path, monkeypatch):
    one, parted = (RunLayout(shutil.copytree(trained_run.root, tmp_path / name)) for name in ("one", "parted"))
    cfg = tiny_config()
    single = call_stage(run_assign, cfg, one)

    names = split_into_parts(parted.products, 20, (parted.curated_attributes, ATTRIBUTES))
    empty = parts.write_part(parted.products, "part-00003", PRODUCTS.empty_table(), PRODUCTS)
    parts.commit_parts(parted.products, parts.list_parts(parted.products) + [empty], PRODUCTS)
    names.append("part-00003")
    with monkeypatch.context() as m:
        _refuse_whole_reads(m)
        counts = call_stage(run_assign, cfg, parted)
    assert counts["parts"] == 4 and counts["embedded"] == 48 and counts["reused"] == 0
    for key in ("products", "extraction_rows", "encoder_rows", "attributes_per_product", "image_failures"):
        assert counts[key] == single[key], key

    # same graph and embeddings as the one-part run
    want, got = _rows(one), _rows(parted)
    assert set(got) == set(want)
    assert max(abs(got[k] - want[k]) for k in want) < 1e-5
    a, b = _vectors(one), _vectors(parted)
    assert set(a) == set(b) and all(np.allclose(a[p], b[p], atol=1e-5) for p in a)

    # co-partitioned: one output part per catalogue part (the empty one too), each with that part's products
    assert parts.part_names(parted.assignments) == parts.part_names(parted.embeddings) == names
    for name in names:
        ids = set(parts.read_part(parted.products, name, PRODUCTS)["product_id"].to_pylist())
        assert set(parts.read_part(parted.embeddings, name, EMBEDDINGS)["product_id"].to_pylist()) == ids
        assert set(parts.read_part(parted.assignments, name, ASSIGNMENTS)["product_id"].to_pylist()) <= ids
    assert parts.read_part(parted.assignments, "part-00003", ASSIGNMENTS).num_rows == 0
    assert parts.part_names(parted.visual_index) == names and counts["visual_index_rows"] == 48  # the visual index

    # incremental, part by part: every stored embedding is reused (no Ray job), same graph
    with monkeypatch.context() as m:
        _refuse_whole_reads(m)
        again = call_stage(run_assign, cfg, parted)
    assert again["embedded"] == 0 and again["reused"] == 48 and set(_rows(parted)) == set(want)

    # a product whose content changed is embedded again; the rest of its part is reused
    stored = parts.list_parts(parted.embeddings)
    table = parts.read_part(parted.embeddings, stored[0].name, EMBEDDINGS)
    mask = pc.equal(table["product_id"], table["product_id"][0])
    table = table.set_column(1, "content_hash", pc.if_else(mask, "stale", table["content_hash"]))
    parts.commit_parts(parted.embeddings, [parts.write_part(parted.embeddings, stored[0].name, table, EMBEDDINGS),
                                           *stored[1:]], EMBEDDINGS)
    third = call_stage(run_assign, cfg, parted)
    assert third["reused"] == 47 and third["embedded"] == 1
    assert parts.part_names(parted.embeddings) == names and _vectors(parted).keys() == a.keys()
