"""The training products' images for the train stage: decoded once, through the frozen vision stages once,
taken from the stored features where a photo is unchanged (``encoders/features.py``)."""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from pinlanding.encoders.clip import ImageFeatures
from pinlanding.encoders.data import ProductSet, decode_images
from pinlanding.encoders.features import FeatureStore, stores_features


class TrainingImages:
    """The training products' images through the frozen vision stages (:meth:`image_features`), computed
    once (the pretrained stages do not change) and kept as float16, taken from ``stored`` features where a
    product's photo is unchanged (``encoders/features.py``); where they are not worth storing
    (:func:`~pinlanding.encoders.features.stores_features`), each batch is computed from the pixels.
    ``computed``: how many products were decoded here."""

    def __init__(self, model: torch.nn.Module, data: ProductSet, device: str, stored: FeatureStore | None = None,
                 threads: int = 2, batch_size: int = 256) -> None:
        self.model, self.device = model, device
        self.cache: ImageFeatures | None = None
        rows = stored.lookup(data.ids, data.content_hash) if stored is not None else np.full(len(data.ids), -1)
        todo = np.flatnonzero(rows < 0)
        self.pixels, ok, _ = decode_images([data.image_paths[i] for i in todo], model.image_size, threads=threads)
        self.has_image = np.ones(len(rows), dtype=bool)
        self.has_image[todo] = ok
        self.computed = int(len(todo))
        if not stores_features(model):
            return  # nothing worth storing (feature_digest is None): each batch is computed from the pixels
        model.eval()
        starts = tqdm(range(0, len(todo), batch_size), desc="frozen image features", unit=" batch",
                      disable=len(todo) <= batch_size)
        with torch.no_grad():
            parts = [model.image_features(torch.as_tensor(self.pixels[i:i + batch_size], device=device))
                     .to("cpu", torch.float16) for i in starts]
        self.pixels = None
        fresh = ImageFeatures(*(torch.cat(p) for p in zip(*parts))) if parts else None
        if stored is None or len(todo) == len(rows):
            self.cache = fresh
            return
        old = stored.features.take(torch.as_tensor(rows[rows >= 0]))
        order = torch.as_tensor(np.argsort(np.concatenate([np.flatnonzero(rows >= 0), todo]), kind="stable"))
        self.cache = ImageFeatures(*(torch.cat([o, f])[order] if f is not None else o[order]
                                     for o, f in zip(old, fresh or (None, None))))

    def batch(self, index: np.ndarray) -> ImageFeatures:
        if self.cache is None:
            return self.model.image_features(torch.as_tensor(self.pixels[index], device=self.device))
        return self.cache.take(torch.as_tensor(index)).to(self.device, torch.float32)

    @torch.no_grad()
    def visual_embeddings(self, index: np.ndarray, has_image: np.ndarray, batch_size: int = 512) -> torch.Tensor:
        """Normalized image embeddings of the products at ``index`` (eval mode), on the model's device."""
        out = [self.model.visual_embedding(self.batch(index[i:i + batch_size]),
                                           torch.as_tensor(has_image[i:i + batch_size], device=self.device))
               for i in range(0, len(index), batch_size)]
        return torch.cat(out).float() if out else torch.zeros((0, 1), device=self.device)
