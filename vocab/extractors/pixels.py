"""What the embedded backend sees in an image: the shares of named colours on the product.

The background is estimated from the border pixels and masked out; the remaining pixels are named by
the nearest colour of the basic palette in CIELAB (CIE76 distance). The sRGB -> Lab conversion is the
standard formula written out with numpy, to avoid a scikit-image dependency for ten lines.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from pinlanding.vocab.extractors.lexicon import COLORS

_PALETTE_NAMES = [name for name, (_, basic) in COLORS.items() if basic]
_BG_DISTANCE = 12.0  # Lab units: pixels this close to the border colour count as background


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8/float sRGB in 0..255 -> (N, 3) CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


_PALETTE_LAB = srgb_to_lab(np.array([COLORS[n][0] for n in _PALETTE_NAMES]))


def color_shares(image: Image.Image, max_side: int = 48, top: int = 3) -> dict:
    """Named colours of the product region with their pixel shares, plus the foreground share."""
    img = image.convert("RGB")
    img.thumbnail((max_side, max_side))
    arr = np.asarray(img, dtype=np.uint8)
    lab = srgb_to_lab(arr.reshape(-1, 3)).reshape(arr.shape)
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    bg = np.median(border, axis=0)
    uniform_border = np.mean(np.linalg.norm(border - bg, axis=1) < _BG_DISTANCE) > 0.6
    pixels = lab.reshape(-1, 3)
    if uniform_border:
        fg = pixels[np.linalg.norm(pixels - bg, axis=1) >= _BG_DISTANCE]
        if len(fg) < 0.03 * len(pixels):  # the product has the background's colour (white on white)
            fg = pixels
    else:
        fg = pixels
    dist = np.linalg.norm(fg[:, None, :] - _PALETTE_LAB[None, :, :], axis=2)
    counts = np.bincount(dist.argmin(axis=1), minlength=len(_PALETTE_NAMES)) / max(len(fg), 1)
    order = np.argsort(-counts)[:top]
    return {
        "colors": [[_PALETTE_NAMES[i], round(float(counts[i]), 3)] for i in order if counts[i] > 0],
        "foreground": round(len(fg) / max(len(pixels), 1), 3),
    }
