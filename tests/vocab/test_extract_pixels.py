"""The image colour namer's fast paths give the values of its definition (the straightforward formulas)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pinlanding.vocab.extractors import pixels
from pinlanding.vocab.extractors.lexicon import COLORS


def reference_lab(rgb: np.ndarray) -> np.ndarray:
    """The sRGB -> CIELAB formula as first written (no table)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


PALETTE = reference_lab(np.array([COLORS[n][0] for n in pixels._PALETTE_NAMES]))


def reference_color_shares(image: Image.Image, max_side: int = 48, top: int = 3) -> dict:
    """``color_shares`` as first written: np.median, np.linalg.norm, argmin of the (N, colours) distances."""
    img = image.convert("RGB")
    img.thumbnail((max_side, max_side))
    arr = np.asarray(img, dtype=np.uint8)
    lab = reference_lab(arr.reshape(-1, 3)).reshape(arr.shape)
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    bg = np.median(border, axis=0)
    uniform_border = np.mean(np.linalg.norm(border - bg, axis=1) < 12.0) > 0.6
    flat = lab.reshape(-1, 3)
    fg = flat
    if uniform_border:
        fg = flat[np.linalg.norm(flat - bg, axis=1) >= 12.0]
        if len(fg) < 0.03 * len(flat):
            fg = flat
    dist = np.linalg.norm(fg[:, None, :] - PALETTE[None, :, :], axis=2)
    counts = np.bincount(dist.argmin(axis=1), minlength=len(PALETTE)) / max(len(fg), 1)
    order = np.argsort(-counts)[:top]
    return {"colors": [[pixels._PALETTE_NAMES[i], round(float(counts[i]), 3)] for i in order if counts[i] > 0],
            "foreground": round(len(fg) / max(len(flat), 1), 3)}


@pytest.mark.parametrize("n", [1, 7, 1728, 50_000])
def test_lab_of_8bit_pixels_is_the_formula_bit_for_bit(n: int) -> None:
    px = np.random.default_rng(n).integers(0, 256, (n, 3), dtype=np.uint8)
    assert np.array_equal(pixels.srgb_to_lab(px), reference_lab(px))
    assert np.array_equal(pixels.srgb_to_lab(px.astype(np.float64)), reference_lab(px))  # the non-table path
    assert np.array_equal(pixels._PALETTE_LAB, PALETTE)


def test_every_8bit_channel_value_and_the_helpers_match_numpy() -> None:
    levels = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    assert np.array_equal(pixels.srgb_to_lab(levels), reference_lab(levels))
    x = np.random.default_rng(1).normal(0, 60, (999, 3))
    assert np.array_equal(pixels._norms(x), np.linalg.norm(x, axis=1))
    for n in (168, 167, 1):
        assert np.array_equal(pixels._median_rows(x[:n]), np.median(x[:n], axis=0))


def test_nearest_palette_colour_equals_the_distance_argmin_on_random_pixels() -> None:
    lab = reference_lab(np.random.default_rng(2).integers(0, 256, (200_000, 3), dtype=np.uint8))
    want = np.linalg.norm(lab[:, None, :] - PALETTE[None, :, :], axis=2).argmin(axis=1)
    assert np.array_equal(pixels.nearest_palette(lab), want)


def test_near_ties_are_decided_by_the_reference_expression() -> None:
    """Midpoints of two palette colours (equidistant: the first index wins) and points a hair off them."""
    i, j = np.triu_indices(len(PALETTE), k=1)
    mid = (PALETTE[i] + PALETTE[j]) / 2
    off = mid + 1e-9 * (PALETTE[j] - PALETTE[i])
    lab = np.concatenate([mid, off, PALETTE])
    want = np.linalg.norm(lab[:, None, :] - PALETTE[None, :, :], axis=2).argmin(axis=1)
    assert np.array_equal(pixels.nearest_palette(lab), want)
    assert np.array_equal(pixels.nearest_palette(lab[:0]), want[:0])


def _photo(rng: np.random.Generator) -> Image.Image:
    """A noisy product shape on a plain or busy background, as JPEG round-trips it."""
    bg = tuple(int(v) for v in rng.integers(0, 256, 3)) if rng.random() < 0.5 else (255, 255, 255)
    img = Image.new("RGB", (60, 80), bg)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = (int(v) for v in rng.integers(0, 40, 2))
        draw.rectangle([x0, y0, x0 + int(rng.integers(5, 30)), y0 + int(rng.integers(5, 50))],
                       fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-20, 21, (80, 60, 3)) * (rng.random() < 0.5)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def test_color_shares_equal_the_reference_on_random_photos() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        img = _photo(rng)
        assert pixels.color_shares(img) == reference_color_shares(img)
