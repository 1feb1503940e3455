"""Training: the loss goes down, resume continues, the model round-trips, bad input is refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pinlanding.collections.pipeline import call_stage
from pinlanding.encoders.bundle import MODEL_FILE, load_bundle
from pinlanding.encoders.clip import build_encoder, clip_loss_reference, key_softmax_loss, multi_positive_clip_loss
from pinlanding.encoders.data import heldout_mask
from pinlanding.encoders.train import run_train

from .conftest import build_run, tiny_config


def test_training_lowers_the_loss_and_writes_the_model(trained_run):
    metrics = json.loads((trained_run.dir("encoder") / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["history"]]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0]
    assert metrics["attributes"] == 8  # 4 colours, 2 categories, 2 genders; the rejected "purple" is left out
    assert 0 < metrics["heldout_products"] < 48
    # solid colours and titles are easy: held-out retrieval must beat chance by far
    assert metrics["heldout"]["product_to_attr_recall"] > 0.6
    bundle = load_bundle(trained_run.dir("encoder"), device="cpu")
    assert bundle.version == metrics["model_version"]
    assert ("color", "purple") not in bundle.vocab
    assert "color" in bundle.exclusive_keys and "gender" in bundle.exclusive_keys


def test_resume_continues_from_the_checkpoint(tmp_path):
    layout = build_run(tmp_path, n=24)
    call_stage(run_train, tiny_config(epochs=2), layout)
    first = json.loads((layout.dir("encoder") / "metrics.json").read_text())["history"]
    call_stage(run_train, tiny_config(epochs=3), layout)
    second = json.loads((layout.dir("encoder") / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in second] == [1, 2, 3]
    assert second[:2] == first  # epochs 1-2 were not rerun


def test_same_seed_same_model(tmp_path):
    a, b = build_run(tmp_path / "a", n=16), build_run(tmp_path / "b", n=16)
    for layout in (a, b):
        call_stage(run_train, tiny_config(epochs=1, resume=False), layout)
    ha = json.loads((a.dir("encoder") / "metrics.json").read_text())["history"][0]["loss"]
    hb = json.loads((b.dir("encoder") / "metrics.json").read_text())["history"][0]["loss"]
    assert ha == pytest.approx(hb, rel=1e-5)
    va = json.loads((a.dir("encoder") / "metrics.json").read_text())["model_version"]
    vb = json.loads((b.dir("encoder") / "metrics.json").read_text())["model_version"]
    assert va == vb  # identical models get the same version, so nothing is re-embedded needlessly


def test_too_few_labelled_products_is_a_clear_error(tmp_path):
    layout = build_run(tmp_path, n=3)
    with pytest.raises(ValueError, match="at least 4"):
        call_stage(run_train, tiny_config(), layout)


def test_multi_positive_loss_equals_open_clip_loss_with_one_positive_each():
    torch.manual_seed(0)
    p = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    a = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(2.5)
    ours = multi_positive_clip_loss(p, a, torch.eye(6), scale)
    assert float(ours) == pytest.approx(float(clip_loss_reference()(p, a, scale.exp())), rel=1e-5)
    # a shared attribute is a positive for both products, not a false negative: the attribute's
    # target is (1/2, 1/2) over the two products, and each product's only column costs nothing
    targets = torch.ones(2, 1)
    both = multi_positive_clip_loss(p[:2], a[:1], targets, scale)
    logits = scale.exp() * (p[:2] @ a[0])
    expected = (torch.logsumexp(logits, 0) - logits.mean()) / 2
    assert float(both) == pytest.approx(float(expected), rel=1e-5)
    first_only = multi_positive_clip_loss(p[:2], a[:1], torch.tensor([[1.0], [0.0]]), scale)
    assert float(first_only) == pytest.approx(float(torch.logsumexp(logits, 0) - logits[0]) / 2, rel=1e-5)


def test_heldout_split_keeps_id_blocks_together():
    ids = [str(i) for i in range(0, 5000, 7)]
    mask = heldout_mask(ids, 0.3, 500, seed=0)
    for block in {int(i) // 500 for i in ids}:
        sides = {m for i, m in zip(ids, mask) if int(i) // 500 == block}
        assert len(sides) == 1
    assert 0 < mask.mean() < 1


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError, match="known: \\['dual', 'open_clip'\\]"):
        build_encoder({"backend": "nope"})


def test_time_budget_stops_training_early(tmp_path):
    layout = build_run(tmp_path, n=16)
    call_stage(run_train, tiny_config(epochs=5, max_train_seconds=0.0), layout)
    metrics = json.loads((layout.dir("encoder") / "metrics.json").read_text())
    assert len(metrics["history"]) == 1 and metrics["stopped_early"] is True
    assert (layout.dir("encoder") / MODEL_FILE).exists()  # still calibrated and saved


def test_value_words_are_masked_whatever_their_spelling():
    from pinlanding.encoders.data import mask_values

    assert mask_values("Roadster Men White T-shirt | Casual Wear", ["tshirts"]) == "Roadster Men White | Casual Wear"
    assert mask_values("Puma Men Navy Blue Shoes", ["navy blue"]) == "Puma Men Shoes"
    assert mask_values("Nike Women Pink Dress", ["men"]) == "Nike Women Pink Dress"  # whole words only
    assert mask_values("Nike Men Pink Dress", []) == "Nike Men Pink Dress"


def test_calibration_scores_come_from_texts_with_the_key_masked(trained_run):
    from pinlanding.encoders.data import decode_images
    from pinlanding.encoders.features import batch_features
    from pinlanding.encoders.validate import masked_scores

    bundle = load_bundle(trained_run.dir("encoder"), device="cpu")
    other = next(v for k, v in bundle.vocab if k == "color" and v != "red")
    # the second names no colour: nothing to mask; every colour of the vocabulary is masked, whichever was extracted
    texts = ["Acme Women Red Dress", "Acme Women Dress", f"Acme Women {other} Dress"]
    img = trained_run.root.parent / "images" / "0.jpg"
    pixels, has_image, _ = decode_images([str(img)] * 3, bundle.model.image_size)
    plain = bundle.encode_products(pixels, has_image, bundle.model.tokenize(texts)) @ bundle.attribute_embeddings().T
    model = bundle.model
    with torch.no_grad():
        # the frozen features as the product embeddings took them (rounded as stored)
        visual = model.visual_embedding(batch_features(model, torch.as_tensor(pixels)), torch.as_tensor(has_image))
    masked = masked_scores(model, bundle.attribute_embeddings(), plain, visual, texts, bundle.vocab)
    colors = [i for i, (k, _) in enumerate(bundle.vocab) if k == "color"]
    assert np.allclose(masked[1, colors], plain[1, colors], atol=1e-5)
    # products 0 and 2 rescored as "Acme Women Dress": exactly product 1's colour scores, not their own
    assert np.allclose(masked[0, colors], plain[1, colors], atol=1e-5)
    assert np.allclose(masked[2, colors], plain[1, colors], atol=1e-5)
    assert not np.allclose(masked[0, colors], plain[0, colors], atol=1e-5)


def test_the_pretrained_tower_trains_on_its_frozen_features_and_reloads(tmp_path):
    layout = build_run(tmp_path, n=16)
    cfg = tiny_config(epochs=2, vision_model="efficientnet_lite0", vision_pretrained="packaged",
                      vision_tuned_stages=0, colour_bins=4, scoped_keys=["color"])
    call_stage(run_train, cfg, layout)
    bundle = load_bundle(layout.dir("encoder"), device="cpu")  # safetensors load of the saved model
    floors, keys = bundle.calibration.floors, np.array([k for k, _ in bundle.vocab])
    assert np.isfinite(floors[keys == "color"]).all() and np.isneginf(floors[keys != "color"]).all()
    trunk = bundle.model.visual.trunk
    assert bundle.model.frozen_stages == len(trunk.blocks) and bundle.model.spec["vision_pretrained"] == "packaged"
    metrics = json.loads((layout.dir("encoder") / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and all(np.isfinite(h["loss"]) for h in metrics["history"])
    assert isinstance(metrics["heldout_reliability"], list)


def test_key_softmax_loss_is_cross_entropy_within_each_key():
    torch.manual_seed(0)
    p = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    a = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    scale = torch.tensor(0.0)  # exp(0) = 1
    colour, kind = torch.tensor([0, 1, 2]), torch.tensor([3, 4])
    targets = torch.zeros(3, 5, dtype=torch.bool)
    targets[0, 1] = targets[1, 2] = targets[1, 4] = True  # product 2 has no value: it adds nothing
    logits = p @ a.t()
    expected = torch.stack([torch.nn.functional.cross_entropy(logits[0:1, :3], torch.tensor([1])),
                            torch.nn.functional.cross_entropy(logits[1:2, :3], torch.tensor([2])),
                            torch.nn.functional.cross_entropy(logits[1:2, 3:], torch.tensor([1]))]).mean()
    assert float(key_softmax_loss(p, a, targets, [colour, kind], scale)) == pytest.approx(float(expected), rel=1e-5)
    # moving product 0 onto its colour lowers the loss
    closer = p.clone()
    closer[0] = a[1]
    assert key_softmax_loss(closer, a, targets, [colour, kind], scale) < key_softmax_loss(p, a, targets, [colour, kind], scale)
