"""The pretrained vision tower: packaged weights, digest check, key-order loading, frozen stages, no photo."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from pinlanding.collections import models
from pinlanding.collections.models import ModelIntegrityError, load_weights_in_order, packaged_vision_weights
from pinlanding.encoders.clip import build_encoder, colour_histogram
from pinlanding.encoders.data import choose_image_size


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return build_encoder({"backend": "dual", "vision_model": "efficientnet_lite0", "vision_pretrained": "packaged",
                          "vision_tuned_stages": 2, "image_size": (40, 32), "embed_dim": 16,
                          "colour_bins": 4})


def test_packaged_weights_load_by_key_order_into_timm(lite0) -> None:
    raw = list(torch.load(packaged_vision_weights("efficientnet_lite0"), weights_only=True).values())
    trunk = lite0.visual.trunk
    assert torch.equal(trunk.conv_stem.weight, raw[0])  # the file's first tensor is the stem
    assert torch.equal(trunk.bn2.running_var, raw[-4])  # ... and the last before its ImageNet classifier
    assert trunk.classifier.out_features == 16  # the classifier is the new projection, not ImageNet's
    assert lite0.image_mean == (0.5, 0.5, 0.5)  # TensorFlow-trained weights: inputs in [-1, 1]


def test_early_stages_are_frozen_and_keep_their_statistics(lite0) -> None:
    trunk = lite0.visual.trunk
    assert lite0.frozen_stages == len(trunk.blocks) - 2
    assert not any(p.requires_grad for p in trunk.blocks[0].parameters())
    assert all(p.requires_grad for p in trunk.blocks[-1].parameters()) and trunk.classifier.weight.requires_grad
    lite0.train()
    assert not trunk.blocks[0].training and trunk.blocks[-1].training
    lite0.eval()


def test_features_then_tail_equal_the_whole_tower(lite0) -> None:
    images = torch.randint(0, 255, (3, 40, 32, 3), dtype=torch.uint8)
    has = torch.ones(3, dtype=torch.bool)
    with torch.no_grad():
        split = lite0.visual_embedding(lite0.image_features(images), has)
        x = (images.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
        whole = lite0.visual(x) + lite0.colour_head(colour_histogram(images, 4))
        whole = torch.nn.functional.normalize(whole, dim=-1)
    assert torch.allclose(split, whole, atol=1e-5)


def test_a_product_without_photo_is_embedded_from_its_text(lite0) -> None:
    ids = torch.as_tensor(lite0.tokenize(["Acme Women Red Dress"] * 2), dtype=torch.long)
    images = torch.stack([torch.zeros(40, 32, 3, dtype=torch.uint8), torch.full((40, 32, 3), 200, dtype=torch.uint8)])
    with torch.no_grad():
        none = lite0.encode_product(images, ids, torch.tensor([False, False]))
        seen = lite0.encode_product(images, ids, torch.tensor([True, True]))
    assert torch.allclose(none[0], none[1]) and not torch.allclose(seen[0], seen[1])
    assert torch.isfinite(none).all()


def test_a_changed_weights_file_is_refused_with_a_clear_error(monkeypatch) -> None:
    good = models.VISION_WEIGHTS["efficientnet_lite0"]
    monkeypatch.setitem(models.VISION_WEIGHTS, "efficientnet_lite0", dataclasses.replace(good, sha256="0" * 64))
    with pytest.raises(ModelIntegrityError, match="SHA-256 .* pinned 0000"):
        packaged_vision_weights("efficientnet_lite0")
    with pytest.raises(ValueError, match="no packaged weights for vision model 'resnet18'"):
        packaged_vision_weights("resnet18")


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(ValueError, match="does not fit|holds .* tensors"):
        load_weights_in_order(timm.create_model("efficientnet_lite0"), path, skip=("classifier.",))


def test_input_size_follows_the_photos_and_is_not_upscaled_without_a_minimum(tmp_path: Path) -> None:
    paths = []
    for i, size in enumerate([(60, 80), (60, 80), (224, 224)]):
        paths.append(str(tmp_path / f"{i}.jpg"))
        Image.new("RGB", size).save(paths[-1])
    assert choose_image_size(paths + [None, str(tmp_path / "missing.jpg")], None) == (80, 60)
    h, w = choose_image_size(paths, 40 * 30)
    assert h * w <= 40 * 30 * 1.1 and abs(h / w - 80 / 60) < 0.15
    assert choose_image_size(paths, 10 ** 6) == (80, 60)
    assert np.isfinite(choose_image_size([], None)).all()


def test_colour_histogram_reads_the_product_not_the_background() -> None:
    img = torch.full((1, 40, 32, 3), 245, dtype=torch.uint8)  # light studio background
    img[0, 10:30, 8:24] = torch.tensor([200, 20, 20], dtype=torch.uint8)  # a red product
    hist = colour_histogram(img, 4)
    red = (3 * 4 + 0) * 4 + 0  # r bin 3, g bin 0, b bin 0
    assert hist.shape == (1, 64) and hist[0, red] == pytest.approx(1.0)
    plain = torch.full((1, 40, 32, 3), 245, dtype=torch.uint8)  # white on white: every pixel counts
    assert colour_histogram(plain, 4)[0].max() == pytest.approx(1.0)
    img[0, 10:15, 8:24] = torch.tensor([20, 20, 200], dtype=torch.uint8)  # a quarter of it blue
    hist = colour_histogram(img, 4)[0]
    blue = (0 * 4 + 0) * 4 + 3
    assert hist[red] == pytest.approx(0.75 ** 0.5) and hist[blue] == pytest.approx(0.25 ** 0.5)  # square roots of shares


def test_a_safetensors_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from pinlanding.encoders.clip import _load_vision_weights

    path = tmp_path / "other.safetensors"
    save_file(timm.create_model("test_efficientnet").state_dict(), str(path))
    with pytest.raises(ValueError, match="does not fit efficientnet_lite0"):
        _load_vision_weights(timm.create_model("efficientnet_lite0", num_classes=8), "efficientnet_lite0", str(path))


def test_small_photos_are_scaled_up_to_the_minimum_size(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.jpg"
        Image.new("RGB", (60, 80), (200, 30, 30)).save(p)
        paths.append(str(p))
    assert choose_image_size(paths, 128 * 96, 128 * 96) == (128, 96)  # aspect 4:3 kept
    assert choose_image_size(paths, None, 10) == (80, 60)  # already larger than the minimum


def test_colour_histogram_bands_tell_the_top_from_the_bottom() -> None:
    img = torch.full((1, 30, 20, 3), 245, dtype=torch.uint8)
    img[0, 2:10, 4:16] = torch.tensor([200, 20, 20], dtype=torch.uint8)  # red at the top
    img[0, 20:28, 4:16] = torch.tensor([20, 20, 200], dtype=torch.uint8)  # blue at the bottom
    hist = colour_histogram(img, 4, bands=3)[0].reshape(4, 64)
    red, blue = (3 * 4 + 0) * 4 + 0, (0 * 4 + 0) * 4 + 3
    assert hist[0, red] == pytest.approx(0.5 ** 0.5) and hist[0, blue] == pytest.approx(0.5 ** 0.5)  # whole region
    assert hist[1, red] == pytest.approx(1.0) and hist[1, blue] == 0  # top band
    assert hist[2].sum() == 0  # the middle band holds only background: no product pixels
    assert hist[3, blue] == pytest.approx(1.0) and hist[3, red] == 0  # bottom band
    assert torch.equal(colour_histogram(img, 4, bands=0), colour_histogram(img, 4))


def test_colour_dims_are_the_colour_branch_own_and_both_towers_carry_them() -> None:
    """With ``colour_dims`` the colour branch writes only its own dimensions, appended to the image embedding;
    products and attribute phrases are ``embed_dim + colour_dims`` wide, and a product without photo has none."""
    model = build_encoder({"backend": "dual", "vision_model": "efficientnet_lite0", "vision_pretrained": "packaged",
                           "vision_tuned_stages": 0, "image_size": (40, 32), "embed_dim": 16, "colour_bins": 4,
                           "colour_bands": 1, "colour_dims": 8}).eval()
    red = torch.zeros(2, 40, 32, 3, dtype=torch.uint8)
    red[..., 0] = 200
    blue = red.flip(-1)  # the same picture in blue: the tower sees shapes alike, the histogram does not
    ids = torch.as_tensor(model.tokenize(["Acme Women Dress"] * 2), dtype=torch.long)
    has = torch.tensor([True, False])
    with torch.no_grad():
        features = model.image_features(red)
        visual = model.visual_embedding(features, has)
        expected = model.colour_head(features.colour)
        products = model.encode_product(red, ids, has)
        other = model.encode_product(blue, ids, has)
        phrases = model.encode_attributes(["color: red", "color: blue"])
    assert visual.shape == (2, 24) and products.shape == (2, 24) and phrases.shape == (2, 24)
    assert torch.allclose(visual[0, 16:], expected[0], atol=1e-6)  # the branch's own output, as it is
    assert torch.allclose(visual[0, :16].norm(), torch.tensor(1.0), atol=1e-5)
    assert torch.count_nonzero(visual[1]) == 0  # no photo: neither the tower nor the colour branch
    assert torch.allclose(products.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(products[1], other[1])  # without the photo, colour cannot change it
    assert not torch.allclose(products[0, 16:], other[0, 16:])
    assert build_encoder({"backend": "dual", "vision_model": "efficientnet_lite0", "image_size": (40, 32),
                          "embed_dim": 16, "colour_bins": 4}).encode_attributes(["color: red"]).shape == (1, 16)
