"""Stored frozen image features: the vision stages that training never changes, computed once per photo.

With a pretrained trunk whose early stages are frozen (the cpu preset freezes every block stage), those
stages' output is fixed by the weights and the photo. Where it is smaller than the photo's pixels
(:func:`stores_features`), the train stage computes it once for its products (``TrainingImages``) and
writes it to ``encoder/image_features.safetensors``; the assign stage then embeds those products from the
stored features instead of decoding and running the trunk a second time, which was about half of its CPU time.

A stored row is used only when all of these match: the product id, its ``content_hash`` (which covers the
photo's bytes) and the digest of the frozen modules' weights plus the input size and histogram bins
(:func:`feature_digest`). Anything else is computed afresh. The file is safetensors (never a pickle).
Features are stored as float16; freshly computed ones pass through float16 too (:func:`as_stored`), so a
product gets the same embedding whether its features were stored or not.
"""
from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from pinlanding.collections.artifacts import AnyPath, as_path
from pinlanding.encoders.checkpoint import read_meta, read_tensors, write_tensors
from pinlanding.encoders.clip import ImageFeatures

FEATURES_FILE = "image_features.safetensors"
FORMAT = 1  # bump when what image_features computes changes for the same weights
_STORES: weakref.WeakKeyDictionary[torch.nn.Module, bool] = weakref.WeakKeyDictionary()


def stores_features(model: torch.nn.Module) -> bool:
    """Whether the model's image features are worth computing once and storing: it has frozen stages, and
    their output per photo (float16, the histogram included) is smaller than the photo's decoded pixels.
    Otherwise decoding the photo again is cheaper than reading them back: a tower tuned down to its stem
    (the gpu preset) would keep 32 half-resolution maps, 5.4x the pixels, or 40 GB for a 200k-product
    training sample that the assign stage's model actor must then read whole."""
    if getattr(model, "frozen_stages", None) is None:
        return False
    if model not in _STORES:  # measured once per model: batch_features asks on every batch
        height, width = model.image_size
        device = next(model.parameters()).device
        frozen = model.frozen_modules()
        modes = [m.training for m in frozen]
        try:  # in eval mode: a batch of one must not move the frozen batch norms' statistics
            for m in frozen:
                m.eval()
            features = model.image_features(torch.zeros((1, height, width, 3), dtype=torch.uint8, device=device))
        finally:
            for m, mode in zip(frozen, modes):
                m.train(mode)
        _STORES[model] = sum(t[0].numel() for t in features) * 2 < height * width * 3
    return _STORES[model]


def feature_digest(model: torch.nn.Module) -> str | None:
    """Digest of everything the stored features depend on; None when the model's features are not stored
    (:func:`stores_features`)."""
    if not stores_features(model):
        return None
    frozen = model.frozen_stages
    h = hashlib.sha256(f"{FORMAT}|{tuple(model.image_size)}|{model.colour_bins}|{model.colour_bands}|{frozen}".encode())
    for module in model.frozen_modules():
        for name, t in module.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def as_stored(features: ImageFeatures) -> ImageFeatures:
    """Features rounded as the store keeps them (float16), on the same device, as float32."""
    return ImageFeatures(*(t.to(torch.float16).float() for t in features))


def _keys(ids: list[str], hashes: list[str | None]) -> list[str]:
    return [f"{i}\x1f{h or ''}" for i, h in zip(ids, hashes)]


def lookup(rows: dict[str, int], ids: list[str], hashes: list[str | None]) -> np.ndarray:
    """Row of each (product id, content hash) in a store's ``rows``, -1 where it is not stored."""
    return np.array([rows.get(k, -1) for k in _keys(ids, hashes)], dtype=np.int64)


@dataclass
class FeatureStore:
    """Stored features and the (product id, content hash) of each row."""

    digest: str
    rows: dict[str, int]
    features: ImageFeatures

    def lookup(self, ids: list[str], hashes: list[str | None]) -> np.ndarray:
        """Row of each product in the store, -1 where it is not stored."""
        return lookup(self.rows, ids, hashes)

    def take(self, rows: np.ndarray, device: str = "cpu") -> ImageFeatures:
        return self.features.take(torch.as_tensor(rows)).to(device, torch.float32)


def write_features(path: AnyPath, digest: str, ids: list[str], hashes: list[str | None],
                   features: ImageFeatures) -> None:
    """Write the features of the products ``ids`` (one row each, float16) atomically."""
    write_tensors(path, {"maps": features.maps.to(torch.float16), "colour": features.colour.to(torch.float16)},
                  {"digest": digest, "keys": _keys(ids, hashes)})


def stored_rows(path: AnyPath, digest: str | None) -> dict[str, int]:
    """Row of each stored (product id, content hash) key, read from the file's header only; empty when the
    store is missing, unreadable or from other frozen stages."""
    path = as_path(path)
    if digest is None or not path.is_file():
        return {}
    try:
        meta = read_meta(path)
    except ValueError:
        return {}  # unreadable: the features are computed afresh
    keys = meta.get("keys")
    if meta.get("digest") != digest or not isinstance(keys, list):
        return {}
    return {str(k): i for i, k in enumerate(keys)}


def read_features(path: AnyPath, digest: str | None) -> FeatureStore | None:
    """The store at ``path`` if it exists and was computed by the same frozen stages (``digest``), else None."""
    rows = stored_rows(path, digest)
    if not rows:
        return None
    try:
        tensors, _ = read_tensors(path)
    except ValueError:
        return None
    if len(tensors.get("maps", [])) != len(rows) or len(tensors.get("colour", [])) != len(rows):
        return None
    return FeatureStore(digest, rows, ImageFeatures(tensors["maps"], tensors["colour"]))  # type: ignore[arg-type]


def batch_features(model: torch.nn.Module, images: torch.Tensor, rows: np.ndarray | None = None,
                   store: FeatureStore | None = None) -> ImageFeatures:
    """Vision features of uint8 images ``[B,H,W,3]``: taken from ``store`` where ``rows`` (a row per image,
    -1: not stored) has one, computed for the others and rounded as stored (``as_stored``); computed as they
    are where the model stores none (:func:`stores_features`)."""
    if not stores_features(model):
        return model.image_features(images)
    if store is None or rows is None or not (rows >= 0).any():
        return as_stored(model.image_features(images))
    have = np.flatnonzero(rows >= 0)
    todo = np.flatnonzero(rows < 0)
    old = store.take(rows[have], str(images.device))
    if not len(todo):
        return old
    new = as_stored(model.image_features(images[torch.as_tensor(todo, device=images.device)]))
    order = torch.as_tensor(np.argsort(np.concatenate([have, todo]), kind="stable"), device=images.device)
    return ImageFeatures(*(torch.cat([o.to(n.dtype), n])[order] for o, n in zip(old, new)))
