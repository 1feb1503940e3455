"""Inputs of the encoder: product texts, attribute phrases, positives, the held-out split, image decoding."""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
import torchvision.io as tv_io
import torchvision.transforms.v2.functional as tv_f

from pinlanding.collections.artifacts import read_table
from pinlanding.collections.schemas import ATTRIBUTES, VOCAB


def product_text(title: str | None, tags: list[str] | None) -> str:
    """The text side of a product: its title, then its merchant tags."""
    tags = [t for t in (tags or []) if t]
    return (title or "") + (" | " + ", ".join(tags) if tags else "")


def attribute_phrase(key: str, value: str) -> str:
    """The text of a vocabulary attribute, e.g. ``color: navy blue``."""
    return f"{key.replace('_', ' ')}: {value}"


_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")


def _norm(word: str) -> str:
    return re.sub(r"[^0-9a-z]", "", word.lower()).rstrip("s")


def mask_values(text: str, values: Iterable[str]) -> str:
    """``text`` without the words of ``values`` (case, hyphens and plural ``s`` ignored: "T-shirt" goes
    for "tshirts"), so the encoder must infer them from the image and the rest of the text, as it must
    for products whose extraction found no value."""
    return mask_words(text, value_words(values))


def value_words(values: Iterable[str]) -> frozenset[str]:
    """The normalized words :func:`mask_words` removes for ``values`` (each value's words and the value whole)."""
    values = list(values)
    words = {_norm(w) for v in values for w in _WORD.findall(v)} | {_norm(v) for v in values}
    words.discard("")
    return frozenset(words)


def mask_words(text: str, words: frozenset[str]) -> str:
    """``text`` without the words whose normalized form is in ``words`` (from :func:`value_words`, built once
    where many texts lose the same values)."""
    if not words:
        return text
    return " ".join(_WORD.sub(lambda m: "" if _norm(m.group()) in words else m.group(), text).split())


def load_vocabulary(path: Path) -> list[tuple[str, str]]:
    """Sorted (key, value) pairs of the curated vocabulary, rejected entries left out."""
    vocab = read_table(path, VOCAB)
    status = vocab.column("status").to_pylist()
    pairs = {(k, v) for k, v, s in zip(vocab.column("key").to_pylist(), vocab.column("value").to_pylist(), status)
             if s != "rejected" and k and v}
    if not pairs:
        raise ValueError(f"vocabulary {path} has no usable (non-rejected) entries; curate the vocabulary first")
    return sorted(pairs)


def load_positives(path: Path, vocab: list[tuple[str, str]]) -> dict[str, list[int]]:
    """product_id -> indices into ``vocab`` of its curated extracted attributes."""
    return positives_of(read_table(path, ATTRIBUTES), vocab)


def positives_of(attrs: pa.Table, vocab: list[tuple[str, str]]) -> dict[str, list[int]]:
    """product_id -> indices into ``vocab`` of its attributes in ``attrs`` (ATTRIBUTES rows)."""
    index = {pair: i for i, pair in enumerate(vocab)}
    out: dict[str, set[int]] = {}
    for pid, k, v in zip(*(attrs.column(c).to_pylist() for c in ("product_id", "key", "value"))):
        i = index.get((k, v))
        if i is not None:
            out.setdefault(pid, set()).add(i)
    return {pid: sorted(s) for pid, s in out.items()}


def ranked_single_valued(rows: pd.DataFrame, keys: tuple[str, ...] | list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Which of ``rows`` (product_id, key, value, confidence) hold a value of ``keys``, and those rows ranked
    within each (product, key): most confident first (no confidence: stated by the merchant, so 1.0), ties by value."""
    single = rows["key"].isin(list(keys)).to_numpy()
    part = rows[single]
    ranked = (part.assign(_c=part["confidence"].fillna(1.0))
              .sort_values(["product_id", "key", "_c", "value"], ascending=[True, True, False, True], kind="stable")
              .drop(columns="_c"))
    return single, ranked


def heldout_mask(product_ids: list[str], val_fraction: float, block: int, seed: int) -> np.ndarray:
    """True for held-out products. Numeric ids in one block of ``block`` consecutive ids share a side,
    so near-identical variants of one style never straddle the split; other ids are hashed alone."""
    def group(pid: str) -> str:
        return str(int(pid) // block) if pid.isdigit() and block > 0 else pid

    cut = int(val_fraction * 10_000)
    return np.array([int(hashlib.sha256(f"{seed}:{group(p)}".encode()).hexdigest()[:8], 16) % 10_000 < cut
                     for p in product_ids], dtype=bool)


def _unreadable(exc: Exception) -> str:
    return f"unreadable image: {type(exc).__name__}: {exc}"[:500]


def decode_image(path: str | None, size: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """uint8 ``[H, W, 3]`` at ``size`` (height, width), or zeros and the reason it could not be read.

    torchvision's libjpeg-turbo/libpng/libwebp decoders and its antialiased resize, which run about
    five times faster than PIL's open/convert/resize on the catalogue's small JPEGs (decoding is the
    CPU stage that bounds GPU assignment throughput).
    """
    data, error = read_image_bytes(path)
    return decode_image_bytes(data, size) if error is None else (np.zeros((*size, 3), np.uint8), error)


def read_image_bytes(path: str | None) -> tuple[torch.Tensor, str | None]:
    """The file's bytes as a uint8 tensor (empty when it cannot be read, with the reason)."""
    if not path:
        return torch.empty(0, dtype=torch.uint8), "no image path"
    try:
        return tv_io.read_file(str(path)), None
    except Exception as exc:  # any unreadable file is recorded, never fatal
        return torch.empty(0, dtype=torch.uint8), _unreadable(exc)


def decode_image_bytes(data: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """:func:`decode_image` of a file's bytes (a uint8 tensor) on the CPU."""
    try:
        img = tv_io.decode_image(data, mode=tv_io.ImageReadMode.RGB)
        if tuple(img.shape[1:]) != tuple(size):
            img = tv_f.resize(img, list(size), antialias=True)
        return np.ascontiguousarray(img.permute(1, 2, 0).numpy()), None
    except Exception as exc:  # any undecodable file is recorded, never fatal
        return np.zeros((*size, 3), np.uint8), _unreadable(exc)


def decode_images(paths: list[str | None], size: tuple[int, int], threads: int = 2
                  ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Decode many images on ``threads`` threads: pixels, has-image mask, errors. Threads do not scale on a
    many-core host (an H200 host: 16 threads 2.2-3.7k photos/s, one thread 3.3-5.1k, with or without torch's
    intra-op threads limited to one; benchmarks/RESULTS.md): parallel decoding needs processes."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(lambda p: decode_image(p, size), paths, chunksize=256))
    pixels = np.stack([r[0] for r in results]) if results else np.zeros((0, *size, 3), np.uint8)
    errors = [r[1] for r in results]
    return pixels, np.array([e is None for e in errors], dtype=bool), errors


_JPEG_MAGIC = (0xFF, 0xD8, 0xFF)


def decode_jpegs_batched(data: list[torch.Tensor], size: tuple[int, int], device: str
                         ) -> tuple[torch.Tensor, list[str | None]]:
    """Decode and resize many files' bytes on ``device`` (nvJPEG on a GPU) in one batch: uint8
    ``[N, H, W, 3]`` on ``device`` and each file's error (None: decoded).

    JPEGs are decoded together by ``torchvision.io.decode_jpeg``, then resized per input size with the
    same antialiased resize as the CPU path (on a GPU it interpolates in float, so a pixel may differ by
    one level from :func:`decode_image`). A batch call fails as a whole on one bad file, so the JPEGs are
    then retried one by one; whatever still fails, and every other format, goes through
    :func:`decode_image_bytes` on the CPU, which decodes PNG/WebP and words the error as the CPU path does.
    """
    out = torch.zeros((len(data), 3, *size), dtype=torch.uint8, device=device)
    errors: list[str | None] = [None] * len(data)
    jpeg = [i for i, d in enumerate(data) if len(d) > 3 and tuple(d[:3].tolist()) == _JPEG_MAGIC]
    cpu = sorted(set(range(len(data))) - set(jpeg))
    decoded: dict[int, torch.Tensor] = {}
    if jpeg:
        try:
            decoded = dict(zip(jpeg, tv_io.decode_jpeg([data[i] for i in jpeg], mode=tv_io.ImageReadMode.RGB,
                                                       device=device)))
        except Exception:  # one bad file fails the whole batched call
            for i in jpeg:
                try:
                    decoded[i] = tv_io.decode_jpeg(data[i], mode=tv_io.ImageReadMode.RGB, device=device)
                except Exception:  # the CPU decoder below gives the reason
                    cpu.append(i)
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, img in decoded.items():
        by_shape[tuple(img.shape)].append(i)
    for shape, rows in by_shape.items():
        batch = torch.stack([decoded[i] for i in rows])
        out[rows] = batch if shape[1:] == tuple(size) else tv_f.resize(batch, list(size), antialias=True)
    for i in cpu:
        pixels, errors[i] = decode_image_bytes(data[i], size)
        out[i] = torch.from_numpy(pixels).permute(2, 0, 1).to(device)
    return out.permute(0, 2, 3, 1), errors


def choose_image_size(paths: list[str | None], max_pixels: int | None, min_pixels: int | None = None,
                      sample: int = 256) -> tuple[int, int]:
    """The encoder's input (height, width): the median size of up to ``sample`` of the catalogue's photos
    (evenly spaced, headers only), scaled to at least ``min_pixels`` and at most ``max_pixels`` pixels
    (aspect kept) and rounded to multiples of 4. Scaling small photos up adds no information but lets an
    ImageNet tower see the product at the scale it was trained on."""
    from PIL import Image

    present = [p for p in paths if p]
    step = max(1, len(present) // sample)
    sizes = []
    for p in present[::step][:sample]:
        try:
            with Image.open(p) as img:
                sizes.append((img.height, img.width))
        except Exception:  # unreadable photos are reported by the stages that decode them
            continue
    if not sizes:
        return (64, 48)
    h, w = (float(np.median([s[i] for s in sizes])) for i in (0, 1))
    scale = max(1.0, (min_pixels / (h * w)) ** 0.5) if min_pixels else 1.0
    scale = min(scale, (max_pixels / (h * w)) ** 0.5) if max_pixels else scale
    return max(4, int(round(h * scale / 4)) * 4), max(4, int(round(w * scale / 4)) * 4)


@dataclass
class ProductSet:
    """Products as columns the encoder needs."""

    ids: list[str]
    content_hash: list[str]
    texts: list[str]
    image_paths: list[str | None]

    @classmethod
    def from_table(cls, products: pa.Table) -> "ProductSet":
        titles = products.column("title").to_pylist()
        tags = products.column("merchant_tags").to_pylist()
        return cls(ids=products.column("product_id").to_pylist(),
                   content_hash=products.column("content_hash").to_pylist(),
                   texts=[product_text(t, g) for t, g in zip(titles, tags)],
                   image_paths=products.column("image_path").to_pylist())

    def take(self, index: np.ndarray) -> "ProductSet":
        return ProductSet([self.ids[i] for i in index], [self.content_hash[i] for i in index],
                          [self.texts[i] for i in index], [self.image_paths[i] for i in index])
