"""The encoder's training sample is gathered part by part, and equals the whole-catalogue one when it fits."""
from __future__ import annotations

from pathlib import Path

import pytest
from testlib import split_into_parts

from pinlanding.collections import parts
from pinlanding.collections.schemas import ATTRIBUTES
from pinlanding.encoders.data import load_positives, load_vocabulary
from pinlanding.encoders.sample import training_sample

from .conftest import build_run


def test_sample_from_parts_equals_the_whole_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = build_run(tmp_path / "a", n=40)
    vocab = load_vocabulary(whole.vocabulary)
    expected = training_sample(whole.products, whole.curated_attributes, vocab, None)
    parted = build_run(tmp_path / "b", n=40)
    split_into_parts(parted.products, 15, (parted.curated_attributes, ATTRIBUTES))
    assert parts.part_names(parted.products) == ["part-00000", "part-00001", "part-00002"]
    monkeypatch.setattr(parts, "read_all", lambda *a, **k: pytest.fail("read a whole per-product artifact"))
    got = training_sample(parted.products, parted.curated_attributes, vocab, None)
    assert got.products.ids == expected.products.ids and len(got.products.ids) == 40
    assert got.positives == expected.positives
    assert got.positives == load_positives(whole.curated_attributes, vocab)
    assert got.exclusive_keys(0.9) == expected.exclusive_keys(0.9) == ["category", "color", "gender"]
    # a declared single-valued key joins them where the sample has it, whatever its extracted values
    assert got.exclusive_keys(1.01, ["color", "season"]) == ["color"]


def test_a_large_catalogue_is_hash_sampled_to_the_bound(tmp_path: Path) -> None:
    layout = build_run(tmp_path, n=400)
    split_into_parts(layout.products, 100, (layout.curated_attributes, ATTRIBUTES))
    vocab = load_vocabulary(layout.vocabulary)
    first = training_sample(layout.products, layout.curated_attributes, vocab, max_products=100, seed=3)
    again = training_sample(layout.products, layout.curated_attributes, vocab, max_products=100, seed=3)
    other = training_sample(layout.products, layout.curated_attributes, vocab, max_products=100, seed=4)
    assert 60 <= len(first.products.ids) <= 140 and first.products.ids == again.products.ids
    assert first.products.ids != other.products.ids
    assert set(first.positives) == set(first.products.ids)
    assert first.key_counts["color"] == 400  # key statistics still cover every product, not just the sample


def test_a_single_valued_key_trains_on_the_products_most_confident_value() -> None:
    import pyarrow as pa

    from pinlanding.encoders.sample import top_values

    rows = [("a", "color", "white", 0.8), ("a", "color", "navy", 0.9), ("a", "pattern", "striped", 0.6),
            ("a", "pattern", "printed", 0.5), ("b", "color", "red", None), ("b", "color", "blue", 0.4),
            ("c", "color", "pink", 0.5), ("c", "color", "green", 0.5)]
    attrs = pa.Table.from_pylist([{"product_id": p, "key": k, "value": v, "confidence": c} for p, k, v, c in rows],
                                 schema=pa.schema([ATTRIBUTES.field(c) for c in ("product_id", "key", "value", "confidence")]))
    got = top_values(attrs, ["color"])
    assert sorted(zip(*(got[c].to_pylist() for c in ("product_id", "key", "value")))) == [
        ("a", "color", "navy"), ("a", "pattern", "printed"), ("a", "pattern", "striped"),  # several patterns stay
        ("b", "color", "red"),  # no confidence: stated by the merchant
        ("c", "color", "green")]  # a tie goes to the first value in order
    assert top_values(attrs, []) is attrs
