"""Stored frozen image features: keyed by product and content, refused when the frozen stages differ, and a
product embeds the same whether its features were stored or computed."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pinlanding.collections.pipeline import call_stage
from pinlanding.encoders.clip import build_encoder
from pinlanding.encoders.features import (FEATURES_FILE, as_stored, batch_features, feature_digest, read_features,
                                          stored_rows, stores_features, write_features)
from pinlanding.encoders.train import run_train

from .conftest import build_run, tiny_config

SPEC = {"backend": "dual", "vision_model": "efficientnet_lite0", "vision_pretrained": "packaged",
        "vision_tuned_stages": 0, "image_size": (40, 32), "embed_dim": 16, "colour_bins": 4}


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return build_encoder(SPEC).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 255, (4, 40, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_store_round_trip_keyed_by_product_and_content(tmp_path, lite0, images) -> None:
    digest = feature_digest(lite0)
    with torch.no_grad():
        feats = lite0.image_features(images)
    write_features(tmp_path / FEATURES_FILE, digest, ["a", "b", "c", "d"], ["h1", "h2", "h3", None], feats)
    store = read_features(tmp_path / FEATURES_FILE, digest)
    assert store is not None
    assert store.lookup(["c", "a", "b", "d", "x"], ["h3", "h1", "changed", None, "h1"]).tolist() == [2, 0, -1, 3, -1]
    assert torch.equal(store.take(np.array([2]))[0], feats.maps[2:3].half().float())
    assert stored_rows(tmp_path / FEATURES_FILE, digest) == store.rows


def test_other_frozen_stages_or_a_corrupt_file_are_not_used(tmp_path, lite0, images) -> None:
    digest = feature_digest(lite0)
    with torch.no_grad():
        write_features(tmp_path / FEATURES_FILE, digest, list("abcd"), list("1234"), lite0.image_features(images))
    bigger = build_encoder({**SPEC, "image_size": (48, 32)})
    assert feature_digest(bigger) != digest
    assert read_features(tmp_path / FEATURES_FILE, feature_digest(bigger)) is None
    assert feature_digest(build_encoder({**SPEC, "vision_tuned_stages": None})) is None  # nothing frozen
    (tmp_path / FEATURES_FILE).write_bytes(b"not a safetensors file")
    assert read_features(tmp_path / FEATURES_FILE, digest) is None and stored_rows(tmp_path / FEATURES_FILE, digest) == {}


def test_stored_and_computed_features_give_the_same_batch(tmp_path, lite0, images) -> None:
    digest = feature_digest(lite0)
    with torch.no_grad():
        write_features(tmp_path / FEATURES_FILE, digest, ["b", "d"], ["2", "4"], lite0.image_features(images[[1, 3]]))
        store = read_features(tmp_path / FEATURES_FILE, digest)
        rows = store.lookup(list("abcd"), list("1234"))
        mixed = batch_features(lite0, images, rows, store)
        fresh = as_stored(lite0.image_features(images))
    assert rows.tolist() == [-1, 0, -1, 1]
    assert torch.equal(mixed.maps, fresh.maps) and torch.equal(mixed.colour, fresh.colour)


def test_features_larger_than_the_photo_are_computed_not_stored(tmp_path, images) -> None:
    """Tuned down to its stem (the gpu preset), the tower's frozen output is 32 half-resolution maps, larger
    than the photo: nothing is stored, and each batch is computed from the pixels as it is (no rounding)."""
    stem_only = build_encoder({**SPEC, "vision_tuned_stages": 7})  # in train mode, as training builds it
    stats = stem_only.visual.trunk.bn1.running_mean.clone()
    assert stem_only.frozen_stages == 0 and not stores_features(stem_only) and stores_features(build_encoder(SPEC))
    assert torch.equal(stem_only.visual.trunk.bn1.running_mean, stats) and stem_only.visual.trunk.bn1.training
    stem_only.eval()
    assert feature_digest(stem_only) is None
    with torch.no_grad():
        computed = batch_features(stem_only, images, np.array([0, -1, 1, -1]), None)
        assert torch.equal(computed.maps, stem_only.image_features(images).maps)
    layout = build_run(tmp_path, n=16)
    call_stage(run_train, tiny_config(epochs=1, resume=False, vision_tuned_stages=7), layout)
    metrics = json.loads((layout.dir("encoder") / "metrics.json").read_text())
    assert not (layout.dir("encoder") / FEATURES_FILE).exists()
    assert metrics["image_features"] == {"stored": 0, "computed": 16}


def test_retraining_takes_the_photos_features_from_the_store(tmp_path) -> None:
    layout = build_run(tmp_path, n=16)
    # every block stage frozen; their output is smaller than the photo (stores_features)
    cfg = tiny_config(epochs=1, resume=False, vision_tuned_stages=0)
    call_stage(run_train, cfg, layout)
    first = json.loads((layout.dir("encoder") / "metrics.json").read_text())
    assert (layout.dir("encoder") / FEATURES_FILE).is_file()
    assert first["image_features"]["computed"] > 0
    call_stage(run_train, cfg, layout)
    second = json.loads((layout.dir("encoder") / "metrics.json").read_text())
    assert second["image_features"] == {"stored": first["image_features"]["computed"], "computed": 0}
    assert second["model_version"] == first["model_version"]


def test_a_photo_embeds_the_same_from_stored_and_computed_features(tmp_path, lite0, images) -> None:
    """The frozen stages' output is kept in the standard (contiguous) layout: computed in channels-last, it
    made the trained head's convolution round differently than on stored features, so a cold run and a
    retrain over stored features ended with models differing in the fifth decimal."""
    digest = feature_digest(lite0)
    with torch.no_grad():
        computed = as_stored(lite0.image_features(images))
        write_features(tmp_path / FEATURES_FILE, digest, list("abcd"), list("1234"), computed)
        stored = read_features(tmp_path / FEATURES_FILE, digest).take(np.arange(4))
        has_image = torch.ones(4, dtype=torch.bool)
        assert computed.maps.is_contiguous()
        assert torch.equal(lite0.visual_embedding(computed, has_image), lite0.visual_embedding(stored, has_image))
