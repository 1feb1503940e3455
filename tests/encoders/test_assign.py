"""Assignment through Ray Data: output schema, the merged graph, incremental skip, corrupt images."""
from __future__ import annotations

import hashlib
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from testlib import Run

from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ASSIGNMENTS, EMBEDDINGS, EXTRACTION_FAILURES, PRODUCTS
from pinlanding.collections.parts import part_names
from pinlanding.encoders.assign import EmbedAndScore, Preprocess, merge_graph, run_assign

from .conftest import product_width, tiny_config

pytestmark = pytest.mark.slow  # starts Ray


@pytest.fixture
def run_copy(trained_run, tmp_path) -> RunLayout:
    shutil.copytree(trained_run.root, tmp_path / "run")
    return RunLayout(tmp_path / "run")


def test_assign_writes_graph_embeddings_and_handles_a_corrupt_image(run_copy):
    products = read_table(run_copy.products, PRODUCTS)
    bad_path = products.column("image_path")[20].as_py()  # mid-way through, inside a batch
    with open(bad_path, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a jpeg")
    rows = products.to_pylist()
    rows[20]["content_hash"] = hashlib.sha256(b"corrupted photo").hexdigest()  # as ingest hashes the new bytes
    write_table(pa.Table.from_pylist(rows, schema=PRODUCTS), run_copy.products, PRODUCTS)
    products = read_table(run_copy.products, PRODUCTS)
    ctx = Run(tiny_config(), run_copy)
    counts = call_stage(run_assign, *ctx)
    # the other photos' frozen features come from the train stage's store; the changed one is decoded
    assert counts["stored_image_features"] == 47

    graph = read_table(run_copy.assignments, ASSIGNMENTS)
    assert graph.schema.equals(ASSIGNMENTS)
    assert set(graph.column("source").to_pylist()) <= {"extraction", "encoder", "extraction+encoder"}
    keys = list(zip(*(graph.column(c).to_pylist() for c in ("product_id", "key", "value"))))
    assert len(keys) == len(set(keys))  # deduplicated
    # every curated extraction row is kept; single-valued keys never get a second value from the encoder
    assert counts["extraction_rows"] == 48 * 3
    df = graph.to_pandas()
    assert (df[df.key.isin(["color", "gender"])].groupby(["product_id", "key"]).size() == 1).all()
    conf = df.loc[df.source == "encoder", "confidence"]
    assert ((conf >= 0) & (conf <= 1)).all()

    emb = read_table(run_copy.embeddings, EMBEDDINGS)
    assert sorted(emb.column("product_id").to_pylist()) == sorted(products.column("product_id").to_pylist())
    vectors = np.asarray(emb.column("embedding").to_pylist(), dtype=np.float32)
    assert vectors.shape == (48, product_width()) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert set(emb.column("model_version").to_pylist()) == {counts["model_version"]}

    failures = read_table(run_copy.dir("assignments") / "failures.parquet", EXTRACTION_FAILURES)
    assert failures.column("product_id").to_pylist() == [products.column("product_id")[20].as_py()]
    assert "unreadable image" in failures.column("error")[0].as_py()
    assert counts["image_failures"] == 1 and counts["embedded"] == 48 and counts["reused"] == 0

    # a single-file catalogue is one part: both outputs are part folders with its one part
    assert part_names(run_copy.assignments) == part_names(run_copy.embeddings) == ["part-00000"]

    # incremental: nothing changed -> nothing re-embedded, same graph
    again = call_stage(run_assign, *ctx)
    assert again["embedded"] == 0 and again["reused"] == 48
    assert read_table(run_copy.assignments, ASSIGNMENTS).equals(graph)

    # one product's content changes -> only it is embedded again
    changed = products.to_pylist()
    changed[5]["title"] = "Acme Men Green Shirt"
    changed[5]["content_hash"] = hashlib.sha256(b"changed").hexdigest()
    write_table(pa.Table.from_pylist(changed, schema=PRODUCTS), run_copy.products, PRODUCTS)
    third = call_stage(run_assign, *ctx)
    assert third["embedded"] == 1 and third["reused"] == 47
    new = read_table(run_copy.embeddings, EMBEDDINGS)
    row = new.filter(pc.equal(new.column("product_id"), changed[5]["product_id"]))
    assert row.column("content_hash")[0].as_py() == changed[5]["content_hash"]


def test_actor_classes_work_on_a_plain_batch(trained_run, tmp_path):
    """The Ray stages are plain callables: call them on a dict batch without a cluster."""
    products = read_table(trained_run.products, PRODUCTS).slice(0, 4)
    spec_model = EmbedAndScore(str(trained_run.dir("encoder")), device="cpu", top_k=3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    paths = products.column("image_path").to_pylist()
    paths[1] = str(bad)
    batch = {"product_id": np.array(products.column("product_id").to_pylist(), dtype=object),
             "content_hash": np.array(products.column("content_hash").to_pylist(), dtype=object),
             "title": np.array(products.column("title").to_pylist(), dtype=object),
             "merchant_tags": np.array(products.column("merchant_tags").to_pylist(), dtype=object),
             "image_path": np.array(paths, dtype=object)}
    pre = Preprocess(spec_model.bundle.model.spec, spec_model.bundle.model.image_size)(batch)
    assert pre["pixels"].shape == (4, 32, 24, 3) and pre["pixels"].dtype == np.uint8
    assert list(pre["has_image"]) == [True, False, True, True]
    out = spec_model(pre)
    assert out["embedding"].shape == (4, product_width())
    assert out["attr_idx"].shape == (4, 3) and (out["attr_idx"] < len(spec_model.bundle.vocab)).all()


def test_an_actor_working_on_batches_in_threads_gives_what_it_gives_one_at_a_time(trained_run):
    """assign.calls_per_actor: one model actor called from several threads at once, as Ray Data does."""
    products = read_table(trained_run.products, PRODUCTS)
    model = EmbedAndScore(str(trained_run.dir("encoder")), device="cpu", top_k=3)
    pre = Preprocess(model.bundle.model.spec, model.bundle.model.image_size)
    batches = [pre({c: np.array(products.column(c).slice(i, 8).to_pylist(), dtype=object)
                    for c in ("product_id", "content_hash", "title", "merchant_tags", "image_path")})
               for i in range(0, 48, 8)]
    serial = [model(b) for b in batches]
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(model, batches))
    for one, other in zip(serial, threaded):
        assert list(one["product_id"]) == list(other["product_id"])
        np.testing.assert_allclose(one["embedding"], other["embedding"], atol=1e-6)
        np.testing.assert_array_equal(one["attr_idx"], other["attr_idx"])


def test_several_calls_per_actor_give_the_same_graph(trained_run, run_copy, tmp_path):
    cfg = tiny_config()
    call_stage(run_assign, *Run(cfg, run_copy))
    other = RunLayout(shutil.copytree(trained_run.root, tmp_path / "other"))
    threaded = cfg.model_copy(update={"assign": cfg.assign.model_copy(update={"calls_per_actor": 3, "batch_size": 8})})
    counts = call_stage(run_assign, *Run(threaded, other))
    assert counts["embedded"] == 48 and counts["reused"] == 0
    assert read_table(other.assignments, ASSIGNMENTS).equals(read_table(run_copy.assignments, ASSIGNMENTS))


def test_a_value_another_implies_is_no_rival_of_it():
    """"kids" beside "boys" is one statement (IMPLIED_VALUES), not two rival genders: it keeps its own
    confidence, and an encoder that answers "boys" confirms a "kids" the text states instead of contradicting it."""
    import pandas as pd

    from pinlanding.encoders.assign import implied_rows, one_value

    ext = pd.DataFrame({"product_id": ["a", "a", "b", "b", "c"], "key": ["gender"] * 5,
                        "value": ["boys", "kids", "kids", "unisex", "kids"], "confidence": [0.95, 0.8, 0.8, 0.95, 0.8]})
    assert implied_rows(ext).tolist() == [False, True, False, False, False]
    got = one_value(ext, ["gender"])
    conf = {(p, v): c for p, v, c in zip(got.product_id, got.value, got.confidence)}
    assert conf[("a", "boys")] == pytest.approx(0.95) and conf[("a", "kids")] == pytest.approx(0.8)
    assert conf[("b", "kids")] == pytest.approx(0.05)  # beside a value that does not imply it: still a rival
    assert len(got) == len(ext)
    enc = pd.DataFrame({"product_id": ["c"], "key": ["gender"], "value": ["boys"], "confidence": [0.9]})
    g = merge_graph(enc, ext, exclusive=["gender"])
    assert float(g[(g.product_id == "c") & (g.value == "kids")].confidence.iloc[0]) == pytest.approx(0.8)
    assert not ((g.product_id == "c") & (g.value == "boys")).any()  # still no second value from the encoder
    enc = enc.assign(value=["men"])
    g = merge_graph(enc, ext, exclusive=["gender"])
    assert float(g[(g.product_id == "c") & (g.value == "kids")].confidence.iloc[0]) < 0.8  # a contradiction


def test_merge_graph_fuses_agreement_and_contradiction_without_second_values():
    import pandas as pd

    ext = pd.DataFrame({"product_id": ["a", "a"], "key": ["color", "category"], "value": ["red", "dress"],
                        "confidence": [0.9, 0.9]})
    enc = pd.DataFrame({"product_id": ["a", "a", "a", "b", "b"], "key": ["color", "category", "pattern", "color", "color"],
                        "value": ["blue", "dress", "solid", "green", "teal"], "confidence": [0.9, 0.7, 0.6, 0.9, 0.6]})
    g = merge_graph(enc, ext, exclusive=["color", "category"])
    rows = {(p, k, v): (s, c) for p, k, v, s, c in zip(g.product_id, g.key, g.value, g.source, g.confidence)}
    assert set(rows) == {("a", "category", "dress"), ("a", "color", "red"), ("a", "pattern", "solid"),
                         ("b", "color", "green")}  # no second colour for a, only b's best
    assert rows[("a", "category", "dress")][0] == "extraction+encoder" and rows[("a", "category", "dress")][1] > 0.9
    assert rows[("a", "color", "red")] == ("extraction", pytest.approx(0.5, abs=1e-3))  # 0.9 against a rival 0.9
    assert rows[("a", "pattern", "solid")] == ("encoder", pytest.approx(0.6))
    assert rows[("b", "color", "green")][0] == "encoder"


def test_values_of_a_single_valued_key_share_one_unit_of_probability():
    import pandas as pd

    from pinlanding.encoders.assign import one_value

    ext = pd.DataFrame({"product_id": ["a", "a", "a", "a", "b"], "key": ["color", "color", "color", "pattern", "color"],
                        "value": ["white", "navy", "red", "striped", "red"], "confidence": [0.8, 0.9, 0.4, 0.6, 0.5]})
    got = one_value(ext, ["color"])
    rows = {(p, k, v): c for p, k, v, c in zip(got.product_id, got.key, got.value, got.confidence)}
    assert rows[("a", "color", "navy")] == pytest.approx(0.9)  # the most confident value keeps its confidence
    # the values below share what the first leaves (0.1), in proportion to their confidences
    assert rows[("a", "color", "white")] == pytest.approx(0.1 * 0.8 / 1.2)  # the title's second colour word
    assert rows[("a", "color", "red")] == pytest.approx(0.1 * 0.4 / 1.2)
    assert rows[("a", "pattern", "striped")] == pytest.approx(0.6)  # a key that may hold several values: untouched
    assert rows[("b", "color", "red")] == pytest.approx(0.5)  # a product's only value: untouched
    assert len(got) == len(ext)  # lowered, never dropped
    g = merge_graph(pd.DataFrame(columns=["product_id", "key", "value", "confidence"]), ext, exclusive=["color"])
    assert float(g[(g.product_id == "a") & (g.value == "white")].confidence.iloc[0]) == pytest.approx(0.1 * 0.8 / 1.2)
    weak = one_value(pd.DataFrame({"product_id": ["c", "c"], "key": ["color", "color"], "value": ["red", "blue"],
                                   "confidence": [0.4, 0.3]}), ["color"])
    assert sorted(weak.confidence.round(4)) == [0.3, 0.4]  # never above a value's own confidence
    # the encoder's answer is the value the text ranks first: the second keeps one_value's share, the third
    # (ranked below white too) likewise; an answer the text ranks below a value still lowers that value
    enc = pd.DataFrame({"product_id": ["a", "b"], "key": ["color", "color"], "value": ["navy", "blue"],
                        "confidence": [0.9, 0.9]})
    g = merge_graph(enc, ext, exclusive=["color"])
    conf = {(p, v): c for p, v, c in zip(g.product_id, g.value, g.confidence)}
    assert conf[("a", "white")] == pytest.approx(0.1 * 0.8 / 1.2) and conf[("a", "red")] == pytest.approx(0.1 * 0.4 / 1.2)
    assert conf[("a", "navy")] > 0.9 and conf[("b", "red")] == pytest.approx(0.1, abs=1e-3)
    enc = pd.DataFrame({"product_id": ["a"], "key": ["color"], "value": ["white"], "confidence": [0.9]})
    g = merge_graph(enc, ext, exclusive=["color"])
    assert float(g[(g.product_id == "a") & (g.value == "navy")].confidence.iloc[0]) == pytest.approx(0.5, abs=1e-3)


def test_merge_graph_gaps_mode_fills_only_the_keys_extraction_left_empty():
    import pandas as pd

    ext = pd.DataFrame({"product_id": ["a"], "key": ["material"], "value": ["cotton"], "confidence": [0.9]})
    enc = pd.DataFrame({"product_id": ["a", "a", "b"], "key": ["material", "pattern", "material"],
                        "value": ["linen", "solid", "linen"], "confidence": [0.8, 0.7, 0.6]})
    gaps = set(zip(*[merge_graph(enc, ext, exclusive=[], fill="gaps")[c] for c in ("product_id", "key", "value")]))
    assert gaps == {("a", "material", "cotton"), ("a", "pattern", "solid"), ("b", "material", "linen")}
    every = merge_graph(enc, ext, exclusive=[])
    assert ("a", "material", "linen") in set(zip(every.product_id, every.key, every.value))


def test_an_encoder_only_value_is_trusted_as_far_as_the_extraction_it_learned_from(tmp_path):
    import pandas as pd

    from pinlanding.collections.artifacts import write_table
    from pinlanding.collections.schemas import ATTRIBUTES
    from pinlanding.encoders.assign import key_trust

    curated = tmp_path / "attributes.parquet"
    rows = [("a", "color", "red", 0.9), ("b", "color", "blue", 0.9), ("a", "material", "cotton", 0.6),
            ("b", "material", "silk", 0.5), ("c", "material", "wool", None)]
    write_table(pa.Table.from_pylist([{"product_id": p, "key": k, "value": v, "source": "description", "confidence": c,
                                       "raw": v} for p, k, v, c in rows], schema=ATTRIBUTES), curated, ATTRIBUTES)
    trust = key_trust(curated)
    assert trust == {"color": pytest.approx(0.9), "material": pytest.approx((0.6 + 0.5 + 1.0) / 3)}
    ext = pd.DataFrame({"product_id": ["a"], "key": ["material"], "value": ["cotton"], "confidence": [0.6]})
    enc = pd.DataFrame({"product_id": ["a", "d", "d"], "key": ["material", "material", "color"],
                        "value": ["cotton", "linen", "black"], "confidence": [0.9, 0.9, 0.9]})
    g = merge_graph(enc, ext, exclusive=["color"], trust=trust, min_confidence=0.7)
    rows = {(p, k, v): (s, c) for p, k, v, s, c in zip(g.product_id, g.key, g.value, g.source, g.confidence)}
    assert rows[("a", "material", "cotton")][0] == "extraction+encoder"  # agreement is pooled as before
    assert rows[("d", "color", "black")] == ("encoder", pytest.approx(0.81))
    assert ("d", "material", "linen") not in rows  # 0.9 x 0.7 falls under min_confidence


def test_pooled_evidence_is_symmetric_and_monotone():
    from pinlanding.encoders.assign import pool_evidence

    assert pool_evidence(np.array([0.5]), np.array([0.8]))[0] == pytest.approx(0.8, abs=1e-4)  # 0.5 says nothing
    assert pool_evidence(np.array([0.8]), np.array([0.7]))[0] == pytest.approx(pool_evidence(np.array([0.7]), np.array([0.8]))[0])
    agree, against = pool_evidence(np.array([0.8, 0.8]), np.array([0.6, 0.9])), pool_evidence(np.array([0.8, 0.8]), np.array([0.6, 0.9]), agree=False)
    assert agree[1] > agree[0] > 0.8 > against[0] > against[1]
