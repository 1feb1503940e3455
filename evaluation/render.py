"""HTML rendering of the reports (jinja2, autoescaped) and the shared pieces both reports show."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import pyarrow as pa

from pinlanding.evaluation.plots import thumbnail

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, d=1: "n/a" if v is None else f"{100 * v:.{d}f}%"
    env.filters["num"] = lambda v, d=3: "n/a" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.{d}f}")
    return env


def render_page(template: str, **context: Any) -> str:
    """Render a template of ``evaluation/templates`` (no I/O besides reading the template)."""
    return _env().get_template(template).render(**context)


def product_lookup(products: pa.Table | None) -> dict[str, dict[str, Any]]:
    """product_id -> {title, image_path} for the sample cards."""
    if products is None:
        return {}
    cols = products.select(["product_id", "title", "image_path"]).to_pydict()
    return {pid: {"title": t, "image_path": p} for pid, t, p in zip(cols["product_id"], cols["title"],
                                                                  cols["image_path"])}


def sample_cards(collections: Sequence[dict[str, Any]], lookup: dict[str, dict[str, Any]], per: int,
                 mark: Callable[[dict[str, Any], list[str]], list[str]] | None = None) -> list[dict[str, Any]]:
    """Cards for the HTML: each collection's title, attributes and first ``per`` products with thumbnails.

    ``mark(collection, product_ids)`` returns one of ``match``/``miss``/``unknown`` per product.
    """
    cards = []
    for c in collections:
        pids = list(c["product_ids"][:per])
        marks = mark(c, pids) if mark else [""] * len(pids)
        items = [{"product_id": p, "title": (lookup.get(p) or {}).get("title") or p, "mark": m,
                  "src": thumbnail((lookup.get(p) or {}).get("image_path"))} for p, m in zip(pids, marks)]
        cards.append({**{k: v for k, v in c.items() if k != "product_ids"}, "items": items})
    return cards


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items evenly spaced through ``items`` (all of them when there are fewer)."""
    if n <= 0 or not items:
        return []
    if len(items) <= n:
        return list(items)
    step = (len(items) - 1) / (n - 1) if n > 1 else 0
    return [items[round(i * step)] for i in range(n)]
