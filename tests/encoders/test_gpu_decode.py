"""The assign stage's bytes path (the model actor decodes compressed photos in a batch, on its GPU when it
has one), checked on the CPU: the same pixels, embeddings and quarantine reasons as the decoding workers' path."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pinlanding.collections.artifacts import read_table
from pinlanding.collections.schemas import PRODUCTS
from pinlanding.encoders.assign import EmbedAndScore, Preprocess
from pinlanding.encoders.data import decode_image, decode_jpegs_batched, read_image_bytes


def _photo(path, size=(60, 80), seed=0, fmt="JPEG"):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)
    return str(path)


def test_batched_decode_matches_the_cpu_path_and_words_failures_alike(tmp_path):
    paths = [_photo(tmp_path / f"{i}.jpg", seed=i) for i in range(3)]
    paths.append(_photo(tmp_path / "odd.jpg", size=(40, 50), seed=7))  # another input size, resized apart
    paths.append(_photo(tmp_path / "p.png", seed=8, fmt="PNG"))  # not a JPEG: the CPU decoder
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")  # JPEG magic, then garbage
    (tmp_path / "junk.jpg").write_bytes(b"garbage")
    paths += [str(tmp_path / "bad.jpg"), str(tmp_path / "junk.jpg")]
    for size in [(112, 84), (32, 24)]:  # scaled up (as the default preset) and down
        pixels, errors = decode_jpegs_batched([read_image_bytes(p)[0] for p in paths], size, "cpu")
        assert pixels.shape == (len(paths), *size, 3) and pixels.dtype == torch.uint8
        for i, p in enumerate(paths):
            want, error = decode_image(p, size)
            assert errors[i] == error
            assert np.abs(pixels[i].numpy().astype(int) - want.astype(int)).max() <= 1
        assert errors[:5] == [None] * 5
        assert all(e.startswith("unreadable image: ") for e in errors[5:])


def test_actor_gives_the_same_embeddings_and_quarantine_from_bytes(trained_run, tmp_path):
    products = read_table(trained_run.products, PRODUCTS).slice(0, 6)
    actor = EmbedAndScore(str(trained_run.dir("encoder")), device="cpu", top_k=3)
    paths = products.column("image_path").to_pylist()
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    paths[1], paths[4] = str(tmp_path / "bad.jpg"), str(tmp_path / "missing.jpg")
    ids, hashes = products.column("product_id").to_pylist(), products.column("content_hash").to_pylist()
    rows = actor.store.lookup(ids, hashes)
    assert (rows >= 0).all()  # the train stage stored every photo's features
    rows[[0, 1, 3, 4]] = -1  # these are decoded; 2 and 5 come from the store and ship no bytes
    batch = {"product_id": np.array(ids, dtype=object), "content_hash": np.array(hashes, dtype=object),
             "title": np.array(products.column("title").to_pylist(), dtype=object),
             "merchant_tags": np.array(products.column("merchant_tags").to_pylist(), dtype=object),
             "image_path": np.array(paths, dtype=object), "feature_row": rows}
    spec, size = actor.bundle.model.spec, actor.bundle.model.image_size
    pixels_path = Preprocess(spec, size)(batch)
    bytes_path = Preprocess(spec, size, ship_bytes=True)(batch)
    assert "pixels" not in bytes_path and [len(b) > 0 for b in bytes_path["image_bytes"]] == [
        True, True, False, True, False, False]
    want, got = actor(pixels_path), actor(bytes_path)
    assert np.allclose(got["embedding"], want["embedding"], atol=1e-5)
    assert np.array_equal(got["attr_idx"], want["attr_idx"])
    assert list(got["image_error"]) == list(want["image_error"])
    assert [bool(e) for e in got["image_error"]] == [False, True, False, False, True, False]
    assert got["image_error"][1].startswith("unreadable image: ")
