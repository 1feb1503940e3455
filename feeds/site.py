"""The site stage: a self-contained static site of landing pages, regenerated incrementally.

Layout under ``site/``: ``index.html`` (collections, filterable by title), ``c/<name>.html`` (one page per
collection; ``c/<name>--<n>.html`` for further pages; ``c/<alias>.html`` redirects a merged duplicate's slug
to the collection that absorbed it), ``images/`` (product photos, copied),
``static/`` (CSS, placeholder) and ``pages.json`` (page -> digest of everything it was rendered from).
A page is rewritten only when its digest changes; pages and images no longer referenced are removed.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from pinlanding.collections.artifacts import (AnyPath, as_path, atomic_path, json_digest, list_files,
                                              make_dirs, read_json, tree_digest, write_json, write_text)
from pinlanding.collections.parts import select_rows
from pinlanding.collections.schemas import PRODUCTS
from pinlanding.feeds.build import read_feeds
from pinlanding.feeds.config import SiteConfig

if TYPE_CHECKING:  # pragma: no cover
    from pinlanding.collections.pipeline import StageContext

PACKAGE_DIR = Path(__file__).resolve().parent
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
PLACEHOLDER = "placeholder.svg"


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(loader=PackageLoader("pinlanding.feeds", "templates"), undefined=StrictUndefined,
                       autoescape=select_autoescape(["html"], default_for_string=True, default=True))


@lru_cache(maxsize=1)
def template_digest() -> str:
    """Digest of the templates and static files: a change re-renders every page."""
    return tree_digest(PACKAGE_DIR / "templates") + tree_digest(PACKAGE_DIR / "static")


def render_page(collection: dict[str, Any]) -> str:
    """HTML of one collection page from its context (see :func:`page_contexts`); no I/O, all text escaped."""
    cards = [_card(p["title"], p.get("brand"), p.get("price_text"), p["image"], p.get("variants", 0))
             for p in collection["products"]]
    return _env().get_template("collection.html").render(**collection, cards=cards)


@lru_cache(maxsize=65536)
def _card(title: str, brand: str | None, price_text: str | None, image: str, variants: int = 0) -> Markup:
    """One product card, rendered (escaped) once per product: a product appears on many pages. ``variants``:
    how many near-identical products the card stands for (itself included; 0 when it stands alone)."""
    return Markup(_env().get_template("card.html").render(title=title, brand=brand, price_text=price_text,
                                                          image=image, variants=variants))


def render_redirect(context: dict[str, Any]) -> str:
    """HTML of an alias page from ``{"site_title", "title", "target"}``: a meta refresh and a canonical link to
    the collection a duplicate feed was merged into; no I/O, all text escaped."""
    return _env().get_template("redirect.html").render(**context)


def render_index(context: dict[str, Any]) -> str:
    """HTML of the index page from ``{"site_title", "root", "generated", "collections": [{title, href, size}]}``."""
    return _env().get_template("index.html").render(**context)


def safe_name(text: str, limit: int = 80) -> str:
    """A filename-safe, collision-free name: lowercase ASCII words joined by '-', plus a hash if anything changed."""
    base = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")[:limit].strip("-")
    if base != text or not base:
        base = f"{base or 'x'}-{hashlib.sha1((text or '').encode()).hexdigest()[:8]}"
    return base


def price_text(price: float | None, currency: str | None) -> str:
    if price is None or price != price:
        return ""
    return f"{'₹' if (currency or '').upper() == 'INR' else (currency or '')} {price:,.0f}".strip()


def related_collections(feeds: list[dict[str, Any]], k: int) -> list[list[int]]:
    """For each feed, the indexes of its ``k`` most related feeds: Jaccard of products + Jaccard of attributes.

    Pairwise overlaps come from sparse incidence products (feeds x items), so the cost follows the overlaps,
    not feeds squared in Python. Ties: higher judge score, then slug.
    """
    n = len(feeds)
    if n < 2 or k == 0:
        return [[] for _ in range(n)]
    mats = [_incidence(feeds, lambda f: [p["product_id"] for p in f["products"]]),
            _incidence(feeds, lambda f: [f"{a['key']}={a['value']}" for a in f["attributes"] or []])]
    sizes = [np.asarray(m.sum(axis=1)).ravel() for m in mats]
    order = sorted(range(n), key=lambda j: (-(feeds[j].get("judge_score") or 0.0), feeds[j]["slug"]))
    tie = np.empty(n, dtype=np.int64)
    tie[order] = np.arange(n)  # tie-break rank: higher judge score, then slug
    out: list[list[int]] = []
    for start in range(0, n, 512):  # row blocks keep memory at 512 x n
        stop = min(n, start + 512)
        total = np.zeros((stop - start, n))
        for m, size in zip(mats, sizes):
            inter = (m[start:stop] @ m.T).toarray()
            union = size[start:stop, None] + size[None, :] - inter
            total += np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        total[np.arange(stop - start), np.arange(start, stop)] = 0.0
        # one integer key per cell: relatedness (quantized to 1e-9) first, then the tie-break rank
        key = -np.rint(total * 1e9).astype(np.int64) * (n + 1) + tie[None, :]
        kk = min(k, n - 1)
        part = np.argpartition(key, kk - 1, axis=1)[:, :kk]
        ranked = np.take_along_axis(part, np.argsort(np.take_along_axis(key, part, 1), axis=1), 1)
        for r in range(stop - start):
            out.append([int(j) for j in ranked[r] if total[r, j] > 0])
    return out


def _incidence(feeds: list[dict[str, Any]], items_of: Any) -> Any:
    """Sparse binary feeds x items matrix (scipy ships with scikit-learn, a dependency)."""
    from scipy import sparse

    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, f in enumerate(feeds):
        for item in set(items_of(f)):
            rows.append(i)
            cols.append(vocab.setdefault(item, len(vocab)))
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(feeds), max(len(vocab), 1)))


def link_image(src: str | None, images_dir: AnyPath, product_id: str, content_hash: str | None) -> str | None:
    """Copy (or upload) a product photo into ``images_dir``; return its file name, or None if unreadable."""
    if not src or not os.path.isfile(src):
        return None
    ext = Path(src).suffix.lower()
    ext = ext if ext in IMAGE_EXTS else ".img"
    name = f"{safe_name(product_id, 40)}-{(content_hash or '')[:10] or 'x'}{ext}"
    target = images_dir / name
    if target.exists():
        return name
    # the bytes are copied, atomically like every artifact: a hard link would publish whatever file the
    # catalogue pointed at and let a later edit of the source change the published site
    with atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)
    return name


def page_contexts(feeds: list[dict[str, Any]], products: dict[str, dict[str, Any]], images: dict[str, str | None],
                  cfg: SiteConfig) -> dict[str, dict[str, Any]]:
    """Relative file path (under site/) -> render context of every collection page."""
    names = [safe_name(f["slug"]) for f in feeds]
    related = related_collections(feeds, cfg.related)
    out: dict[str, dict[str, Any]] = {}
    for i, f in enumerate(feeds):
        chunks = [f["products"][s:s + cfg.products_per_page] for s in range(0, len(f["products"]), cfg.products_per_page)] or [[]]
        files = [f"c/{names[i]}.html"] + [f"c/{names[i]}--{n}.html" for n in range(2, len(chunks) + 1)]
        rel = [{"title": feeds[j]["title"] or feeds[j]["slug"], "href": f"{names[j]}.html"} for j in related[i]]
        for page, (path, chunk) in enumerate(zip(files, chunks), start=1):
            items = []
            for p in chunk:
                info = products.get(p["product_id"], {})
                img = images.get(p["product_id"])
                n_variants = len(p.get("variants") or [])
                items.append({"product_id": p["product_id"], "score": p["score"],
                              "variants": n_variants + 1 if n_variants else 0,
                              "title": info.get("title") or p["product_id"], "brand": info.get("brand"),
                              "price": info.get("price"), "price_text": price_text(info.get("price"), info.get("currency")),
                              "image": f"../images/{img}" if img else f"../static/{PLACEHOLDER}"})
            out[path] = {
                "site_title": cfg.title, "root": "../", "generated": None, "slug": f["slug"],
                "title": f["title"] or f["slug"], "attributes": f["attributes"] or [], "size": f["size"],
                "page": page, "pages": len(files), "products": items, "related": rel,
                "prev": Path(files[page - 2]).name if page > 1 else None,
                "next": Path(files[page]).name if page < len(files) else None,
            }
    return out


def alias_contexts(feeds: list[dict[str, Any]], cfg: SiteConfig) -> dict[str, dict[str, Any]]:
    """Relative file path (under site/) -> render context of the redirect page of every alias slug of a feed."""
    out: dict[str, dict[str, Any]] = {}
    for f in feeds:
        for alias in f.get("aliases") or []:
            out[f"c/{safe_name(alias)}.html"] = {"site_title": cfg.title, "title": f["title"] or f["slug"],
                                                 "target": f"{safe_name(f['slug'])}.html"}
    return out


def build_site(feeds: list[dict[str, Any]], products: list[dict[str, Any]], out: str | AnyPath,
               cfg: SiteConfig) -> dict[str, int]:
    """Write (incrementally) the site for ``feeds`` under ``out``; returns counts of what changed."""
    out = as_path(out)
    images_dir = out / "images"
    make_dirs(images_dir, out / "c")
    by_id = {p["product_id"]: p for p in products}
    wanted = {p["product_id"] for f in feeds for p in f["products"]}
    images = {pid: link_image(by_id.get(pid, {}).get("image_path"), images_dir, pid, by_id.get(pid, {}).get("content_hash"))
              if cfg.link_images else None for pid in wanted}
    pages = page_contexts(feeds, by_id, images, cfg)
    index_ctx = {"site_title": cfg.title, "root": "", "generated": None,
                 "collections": [{"title": f["title"] or f["slug"], "href": f"c/{safe_name(f['slug'])}.html",
                                  "size": f["size"]} for f in feeds]}
    redirects = alias_contexts(feeds, cfg)
    previous = read_json(out / "pages.json", default={}) or {}
    digests: dict[str, str] = {}
    written = 0
    jobs = ([(path, ctx, render_page) for path, ctx in pages.items()] + [("index.html", index_ctx, render_index)]
            + [(path, ctx, render_redirect) for path, ctx in redirects.items() if path not in pages])
    for path, ctx, render in jobs:
        digests[path] = json_digest([template_digest(), ctx])
        if previous.get(path) != digests[path] or not (out / path).exists():
            write_text(out / path, render(ctx))
            written += 1
    removed = 0
    for old in sorted(set(previous) - set(digests)):
        if (out / old).is_file():
            (out / old).unlink()
            removed += 1
    for stray in list_files(out / "c", "*.html"):  # pages left by an interrupted run that never reached pages.json
        if f"c/{stray.name}" not in digests:
            stray.unlink()
            removed += 1
    used = {name for name in images.values() if name}
    images_removed = 0
    for img in list_files(images_dir):
        if img.name not in used:
            img.unlink()
            images_removed += 1
    static = out / "static"
    make_dirs(static)
    for src in (PACKAGE_DIR / "static").iterdir():
        if not (static / src.name).exists() or (static / src.name).read_bytes() != src.read_bytes():
            write_text(static / src.name, src.read_text(encoding="utf-8"))
    write_json(out / "pages.json", digests)
    return {"collections": len(feeds), "pages": len(pages), "redirects": len(redirects), "pages_written": written,
            "pages_unchanged": len(digests) - written, "pages_removed": removed, "images": len(used),
            "images_removed": images_removed, "missing_images": sum(1 for v in images.values() if not v)}


def run_site(ctx: "StageContext") -> dict[str, Any]:
    """Stage entry point: feeds + catalogue -> site/ (see module docstring)."""
    feeds = read_feeds(ctx.layout)
    shown = {p["product_id"] for f in feeds for p in f["products"]}  # the catalogue is read part by part for these
    products = select_rows(ctx.layout.products, PRODUCTS, "product_id", shown,
                           ["product_id", "title", "brand", "price", "currency", "image_path", "content_hash"]).to_pylist()
    return build_site(feeds, products, ctx.layout.dir("site"), ctx.cfg.site)
