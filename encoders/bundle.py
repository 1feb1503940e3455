"""The trained encoder as saved by the train stage, and the inference helpers built on it.

``encoder/model.safetensors`` holds the trainable weights and calibration arrays as tensors, and the backend
spec, the vocabulary and the single-valued keys as JSON (:mod:`pinlanding.encoders.checkpoint`: never a
pickle); its digest is the ``model_version`` stamped on embeddings.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from pinlanding.collections.artifacts import AnyPath, as_path, file_digest
from pinlanding.collections.engines import torch_device
from pinlanding.encoders.calibrate import Calibration
from pinlanding.encoders.checkpoint import read_tensors, write_tensors
from pinlanding.encoders.clip import build_encoder
from pinlanding.encoders.data import attribute_phrase
from pinlanding.encoders.features import FeatureStore, batch_features

MODEL_FILE = "model.safetensors"
CALIBRATION_FIELDS = ("thresholds", "positives", "precision", "recall", "platt", "groups", "scale", "centres", "floors")
# groups and scale are absent for cosine-scored models, centres and floors in older files
REQUIRED_FIELDS = CALIBRATION_FIELDS[:5]


@dataclass
class EncoderBundle:
    """A loaded encoder: model (eval mode), vocabulary, calibration, version."""

    model: torch.nn.Module
    vocab: list[tuple[str, str]]
    calibration: Calibration
    exclusive_keys: list[str]
    version: str
    device: str

    @property
    def phrases(self) -> list[str]:
        return [attribute_phrase(k, v) for k, v in self.vocab]

    @torch.no_grad()
    def attribute_embeddings(self) -> np.ndarray:
        return self.model.encode_attributes(self.phrases).float().cpu().numpy()

    @torch.no_grad()
    def encode_products(self, pixels: np.ndarray, has_image: np.ndarray, token_ids: np.ndarray,
                        batch_size: int = 512) -> np.ndarray:
        """Product embeddings ``[N, D]`` from uint8 pixels ``[N,H,W,3]``, an image mask and token ids."""
        out = [self.embed_batch(pixels[i:i + batch_size], has_image[i:i + batch_size], token_ids[i:i + batch_size])
               .float().cpu().numpy() for i in range(0, len(pixels), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    @torch.no_grad()
    def embed_batch(self, pixels: np.ndarray, has_image: np.ndarray, token_ids: np.ndarray,
                    rows: np.ndarray | None = None, store: FeatureStore | None = None) -> torch.Tensor:
        """One batch of product embeddings, left on the model's device; the frozen image features of the
        products with a ``rows`` entry >= 0 come from ``store`` (their pixels are not read)."""
        img = torch.as_tensor(pixels, device=self.device)
        ids = torch.as_tensor(token_ids, dtype=torch.long, device=self.device)
        mask = torch.as_tensor(has_image, device=self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda")):
            visual = self.model.visual_embedding(batch_features(self.model, img, rows, store), mask)
            return self.model.combine(visual, self.model.text_embedding(ids))


def save_bundle(path: AnyPath, model: torch.nn.Module, vocab: list[tuple[str, str]], calibration: Calibration,
                exclusive: list[str], extra: dict[str, Any] | None = None) -> str:
    """Write the model file atomically; return its model version (a digest prefix).

    Identical models give identical bytes, hence the same model version (no needless re-embedding).
    """
    tensors = {f"state.{k}": v for k, v in model.trainable_state_dict().items()}
    tensors |= {f"calibration.{name}": torch.as_tensor(np.asarray(getattr(calibration, name)))
                for name in CALIBRATION_FIELDS if getattr(calibration, name) is not None}
    write_tensors(path, tensors, {"kind": "encoder", "spec": model.spec, "vocab": vocab, "exclusive_keys": exclusive,
                                  "extra": extra or {}})
    return file_digest(path)[:16]


def load_bundle(encoder_dir: AnyPath, device: str = "auto") -> EncoderBundle:
    """Load the model file in ``encoder_dir`` onto ``device`` (``auto``: CUDA when visible); anything but a
    model file written by :func:`save_bundle` is refused with a ValueError."""
    path = as_path(encoder_dir) / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"no trained encoder at {path}; run the train stage first")
    tensors, meta = read_tensors(path)
    if meta.get("kind") != "encoder" or any(f"calibration.{name}" not in tensors for name in REQUIRED_FIELDS):
        raise ValueError(f"{path} is not a pinlanding encoder file; rerun the train stage")
    device = torch_device(device)
    model = build_encoder(meta["spec"])
    model.load_trainable({k[6:]: v for k, v in tensors.items() if k.startswith("state.")})
    model.to(device).eval()
    cal = Calibration(**{name: tensors[f"calibration.{name}"].numpy() for name in CALIBRATION_FIELDS
                         if f"calibration.{name}" in tensors})
    cal.scale = float(cal.scale)
    return EncoderBundle(model, [tuple(p) for p in meta["vocab"]], cal, list(meta["exclusive_keys"]),
                         file_digest(path)[:16], device)


class Scorer:
    """Scores product embeddings against every vocabulary attribute; keeps those above their thresholds.

    Runs in torch on ``device``, so on a GPU the model actor scores where it embeds.
    """

    def __init__(self, attributes: np.ndarray, calibration: Calibration, top_k: int = 20,
                 min_confidence: float = 0.0, device: str = "cpu") -> None:
        self.device = device
        self.attributes = torch.as_tensor(attributes, dtype=torch.float32, device=device)  # [V, D]
        on_device = {name: torch.as_tensor(getattr(calibration, name), dtype=torch.float32, device=device)
                     for name in ("thresholds", "floors", "platt", "centres") if getattr(calibration, name) is not None}
        self.calibration = replace(calibration, **on_device)  # moved once, not on every batch
        self.top_k = min(top_k, len(calibration.thresholds))
        self.min_confidence = min_confidence

    @torch.no_grad()
    def score(self, embeddings: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(attribute index ``[N, k]``, confidence ``[N, k]``); slots not assigned hold -1 and 0."""
        emb = torch.as_tensor(embeddings, device=self.device).float()
        cosine = emb @ self.attributes.T
        scores = self.calibration.scores(cosine)
        conf = self.calibration.confidence(scores)
        cal = self.calibration
        ok = (scores >= cal.thresholds) & (conf >= self.min_confidence) & cal.answers(scores) & cal.in_scope(cosine)
        top, idx = torch.where(ok, conf, -1.0).topk(self.top_k, dim=1)
        idx = torch.where(top >= 0, idx, -1)
        return idx.to(torch.int32).cpu().numpy(), top.clamp_min(0).cpu().numpy().astype(np.float32)
