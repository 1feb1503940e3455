"""Small matplotlib charts returned as PNG data URIs, and product thumbnails for the HTML reports.

PNG (not inline SVG) keeps the reports free of markup built from catalogue text: every string a
chart shows is drawn as pixels, and the page only carries a ``data:`` URI that jinja escapes.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str = "",
              reference: float | None = None, reference_label: str = "", limit: float | None = None) -> str:
    """A horizontal bar chart (largest first as given), with an optional reference line."""
    fig, ax = plt.subplots(figsize=(5.6, 0.32 * max(len(labels), 3) + 1.2))
    ax.barh(range(len(labels)), values, color="#3b6ea8")
    ax.set_yticks(range(len(labels)), [str(x)[:40] for x in labels])
    ax.invert_yaxis()
    if reference is not None:
        ax.axvline(reference, color="#c0392b", linestyle="--", label=reference_label)
        ax.legend(loc="lower right")
    if limit is not None:
        ax.set_xlim(0, limit)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _png(fig)


def histogram(values: Sequence[float], title: str, xlabel: str, bins: int | Sequence[float] = 20,
              log: bool = False, weights: Sequence[float] | None = None) -> str:
    """A histogram of ``values``, each counted ``weights[i]`` times if given (an empty chart says so)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    if len(values):
        ax.hist(values, bins=bins, weights=weights, color="#3b6ea8", edgecolor="white", log=log)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return _png(fig)


def grouped_bars(labels: Sequence[str], series: dict[str, Sequence[float]], title: str, ylabel: str = "") -> str:
    """Vertical bars, one group per label and one bar per series."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    width = 0.8 / max(len(series), 1)
    for i, (name, vals) in enumerate(series.items()):
        ax.bar([x + i * width for x in range(len(labels))], vals, width=width, label=name)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))],
                  [str(x)[:16] for x in labels], rotation=30, ha="right")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend()
    return _png(fig)


def thumbnail(path: str | Path | None, max_bytes: int = 200_000) -> str | None:
    """A product photo as a data URI (JPEG or PNG only), or None when it is missing or not an image."""
    if not path:
        return None
    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size > max_bytes:
            return None
        data = p.read_bytes()
    except OSError:
        return None
    kind = "jpeg" if data.startswith(_JPEG) else "png" if data.startswith(_PNG) else None
    return f"data:image/{kind};base64," + base64.b64encode(data).decode() if kind else None
