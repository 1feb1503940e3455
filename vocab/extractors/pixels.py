"""What the embedded backend sees in an image: the shares of named colours on the product.

The background is estimated from the border pixels and masked out; the remaining pixels are named by
the nearest colour of the basic palette in CIELAB (CIE76 distance). The sRGB -> Lab conversion is the
standard formula written out with numpy, to avoid a scikit-image dependency for ten lines.

Speed without changing a result (this runs once per product photo): the sRGB companding of an 8-bit
channel is a 256-entry table (the same numpy expression, evaluated once); the nearest palette colour is
found through a matrix product of squared distances, and only pixels whose best and second-best palette
colours lie within :data:`_TIE_MARGIN` of each other are named by the reference expression (Euclidean
norms, first index on ties), so the names equal the reference's (see :func:`nearest_palette`).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from pinlanding.vocab.extractors.lexicon import COLORS

_PALETTE_NAMES = [name for name, (_, basic) in COLORS.items() if basic]
_BG_DISTANCE = 12.0  # Lab units: pixels this close to the border colour count as background
_M = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_WHITE = np.array([0.95047, 1.0, 1.08883])


def _linear(c: np.ndarray) -> np.ndarray:
    """sRGB companding of channel values scaled to 0..1 (float64)."""
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


_LINEAR_U8 = _linear(np.arange(256, dtype=np.float64) / 255.0)  # the same, for every 8-bit channel value


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8/float sRGB in 0..255 -> (N, 3) CIELAB (D65)."""
    rgb = np.asarray(rgb)
    c = _LINEAR_U8[rgb] if rgb.dtype == np.uint8 else _linear(rgb.astype(np.float64) / 255.0)
    xyz = c @ _M.T / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


_PALETTE_LAB = srgb_to_lab(np.array([COLORS[n][0] for n in _PALETTE_NAMES], dtype=np.uint8))
_PALETTE_SQ = (_PALETTE_LAB ** 2).sum(axis=1)
_PALETTE_M2 = np.ascontiguousarray(-2.0 * _PALETTE_LAB.T)  # (3, colours); x @ it == -2 (x @ palette.T) exactly
# Lab coordinates stay within +-130, so squared distances stay below 2e5 and the float64 rounding of
# either formula below is under 1e-10; a margin this wide leaves no pixel whose nearest colour the two
# formulas could disagree on.
_TIE_MARGIN = 1e-6


def _norms(x: np.ndarray) -> np.ndarray:
    """Norms of the rows of an (..., 3) array, with the values of ``np.linalg.norm(x, axis=-1)``: it sums
    the three squares left to right as written here (a reduction over a length-3 axis is far slower)."""
    sq = x * x
    return np.sqrt(sq[..., 0] + sq[..., 1] + sq[..., 2])


def nearest_palette_reference(lab: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour of each (N, 3) Lab row: the definition (CIE76, first on ties)."""
    return _norms(lab[:, None, :] - _PALETTE_LAB[None, :, :]).argmin(axis=1)


def nearest_palette(lab: np.ndarray) -> np.ndarray:
    """:func:`nearest_palette_reference`, fast: ``|p|^2 - 2 x.p`` ranks the palette as the distance does
    (``|x|^2`` is the same for every palette colour); rows where another palette colour scores within
    :data:`_TIE_MARGIN` of the best are decided by the reference expression."""
    score = lab @ _PALETTE_M2
    score += _PALETTE_SQ
    best = score.argmin(axis=1)
    near = score < np.take_along_axis(score, best[:, None], axis=1) + _TIE_MARGIN
    if np.count_nonzero(near) > len(lab):  # some row has a second colour within the margin (rare)
        close = near.sum(axis=1) > 1
        best[close] = nearest_palette_reference(lab[close])
    return best


def _median_rows(x: np.ndarray) -> np.ndarray:
    """Column medians of an (N, 3) array, as ``np.median(x, axis=0)`` gives them (no NaN in Lab)."""
    s = np.sort(x, axis=0)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def color_shares(image: Image.Image, max_side: int = 48, top: int = 3) -> dict:
    """Named colours of the product region with their pixel shares, plus the foreground share."""
    img = image.convert("RGB")
    img.thumbnail((max_side, max_side))
    arr = np.asarray(img, dtype=np.uint8)
    lab = srgb_to_lab(arr.reshape(-1, 3)).reshape(arr.shape)
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    bg = _median_rows(border)
    uniform_border = np.mean(_norms(border - bg) < _BG_DISTANCE) > 0.6
    pixels = lab.reshape(-1, 3)
    if uniform_border:
        fg = pixels[_norms(pixels - bg) >= _BG_DISTANCE]
        if len(fg) < 0.03 * len(pixels):  # the product has the background's colour (white on white)
            fg = pixels
    else:
        fg = pixels
    counts = np.bincount(nearest_palette(fg), minlength=len(_PALETTE_NAMES)) / max(len(fg), 1)
    order = np.argsort(-counts)[:top]
    return {
        "colors": [[_PALETTE_NAMES[i], round(float(counts[i]), 3)] for i in order if counts[i] > 0],
        "foreground": round(len(fg) / max(len(pixels), 1), 3),
    }
