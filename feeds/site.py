"""The site stage: a self-contained static site of landing pages, regenerated incrementally.

Layout under ``site/`` (everything in it is meant to be published):

- ``index.html``: the home page, collections grouped by hub (``site.hub_key``, the category), biggest first,
  a thumbnail each; ``collections.html``: every collection A-Z, filterable by title (the site's search);
- ``h/<name>.html``: one hub page per category, its collections by facet (colour, material, ...);
- ``c/<name>.html`` (one page per collection; ``c/<name>--<n>.html`` for further pages; ``c/<alias>.html``
  redirects a merged duplicate's slug to the collection that absorbed it);
- ``sitemap.xml`` (an index of ``sitemap-<n>.xml`` past ``site.sitemap_max_urls`` URLs) and ``robots.txt``;
- ``images/`` (product photos, every size the catalogue has, copied), ``static/`` (CSS,
  placeholder).

Every page has a unique title and meta description, a canonical link (absolute under ``site.base_url``, relative
when it is unset), Open Graph tags and JSON-LD (``CollectionPage`` + ``ItemList`` of ``Product``,
``BreadcrumbList``). The digests of what each page was rendered from (and the sizes of the photos) live beside
the site, in ``<site>.pages.json``, never in it: a page is rewritten only when its digest changes, its sitemap
``lastmod`` moves only when its content does, and pages and images no longer referenced are removed.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import stat
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict
from xml.sax.saxutils import escape as xml_escape

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from pinlanding.collections.artifacts import (AnyPath, as_path, atomic_path, is_remote, json_digest, list_files,
                                              make_dirs, read_json, read_schema, read_table, tree_digest, write_table,
                                              write_text)
from pinlanding.collections.ingest import clean_url
from pinlanding.collections.parts import is_parted, list_parts, read_part, select_rows
from pinlanding.collections.schemas import ASSIGNMENTS, PRODUCTS, SIMILAR
from pinlanding.collections.stage_inputs import StageInputs, artifact
from pinlanding.feeds.build import read_feeds
from pinlanding.feeds.config import FeedsConfig, SiteConfig

PACKAGE_DIR = Path(__file__).resolve().parent
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
PLACEHOLDER = "placeholder.svg"
PLACEHOLDER_SIZE = (60, 80)
STATE_FORMAT = 2
OTHER_HUB = "more--collections"  # hub of collections without a hub attribute (safe_name never makes '--')
CARD_SIZES = "(max-width: 40rem) 45vw, 12rem"
THUMB_SIZES = "6rem"


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(loader=PackageLoader("pinlanding.feeds", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html"], default_for_string=True, default=True))
    env.filters["jsonld"] = json_ld
    env.filters["num"] = lambda n: f"{n:,}"
    return env


@lru_cache(maxsize=1)
def template_digest() -> str:
    """Digest of the templates and static files: a change re-renders every page."""
    return tree_digest(PACKAGE_DIR / "templates") + tree_digest(PACKAGE_DIR / "static")


def json_ld(data: Any) -> Markup:
    """JSON for a ``<script type="application/ld+json">`` block that no text can break out of: ``<``, ``>``
    and ``&`` are written as JSON escapes (so ``</script>`` or ``<!--`` in a title stays inside the string),
    as are U+2028/U+2029."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return Markup(text)


# ---------------------------------------------------------------------------------------------- rendering


def render_page(collection: dict[str, Any]) -> str:
    """HTML of one collection page from its context (see :func:`page_contexts`); no I/O, all text escaped."""
    cards = [_card(p["title"], p.get("brand"), p.get("price_text"), _photo_key(p["image"]), p.get("variants", 0),
                   p.get("url"), i < 4, p.get("similar")) for i, p in enumerate(collection["products"])]
    return _env().get_template("collection.html").render(**collection, cards=cards)


def render_similar(context: dict[str, Any]) -> str:
    """HTML of a product's "similar items" page from its context (see :func:`similar_contexts`); no I/O."""
    cards = [_card(p["title"], p.get("brand"), p.get("price_text"), _photo_key(p["image"]), 0, p.get("url"), i == 0,
                   p.get("similar")) for i, p in enumerate([context["product"], *context["products"]])]
    return _env().get_template("similar.html").render(**context, lead=cards[0], cards=cards[1:])


def _photo_key(image: Any) -> tuple:
    """A photo as a hashable tuple ``(src, srcset, width, height)``; a bare path is a placeholder-sized photo."""
    if isinstance(image, str):
        return (image, "", *PLACEHOLDER_SIZE)
    return (image["src"], image.get("srcset") or "", image["width"], image["height"])


@lru_cache(maxsize=65536)
def _card(title: str, brand: str | None, price_text: str | None, image: tuple, variants: int = 0,
          url: str | None = None, eager: bool = False, similar: str | None = None) -> Markup:
    """One product card, rendered (escaped) once per product: a product appears on many pages. ``variants``:
    how many near-identical products the card stands for (itself included; 0 when it stands alone); ``url``:
    the product's own page (the card links there), or None; ``similar``: its "similar items" page, or None."""
    src, srcset, width, height = image
    return Markup(_env().get_template("card.html").render(
        title=title, brand=brand, price_text=price_text, variants=variants, url=url, eager=eager, similar=similar,
        image={"src": src, "srcset": srcset, "width": width, "height": height}, sizes=CARD_SIZES))


def render_redirect(context: dict[str, Any]) -> str:
    """HTML of an alias page from ``{"site_title", "title", "target", "canonical"?}``: a meta refresh and a
    canonical link to the collection a duplicate feed was merged into; no I/O, all text escaped."""
    return _env().get_template("redirect.html").render(**({"canonical": context["target"]} | context))


def render_gone(context: dict[str, Any]) -> str:
    """HTML of a tombstone page (``{"site_title", "home"}``): the collection was dropped (410 in the feed API)."""
    return _env().get_template("gone.html").render(**context)


def render_index(context: dict[str, Any]) -> str:
    """HTML of the home page (see :func:`home_context`)."""
    return _env().get_template("index.html").render(**context)


def render_hub(context: dict[str, Any]) -> str:
    """HTML of a hub page (see :func:`hub_contexts`)."""
    return _env().get_template("hub.html").render(**context)


def render_all(context: dict[str, Any]) -> str:
    """HTML of the A-Z list of every collection with its title filter (see :func:`all_context`)."""
    return _env().get_template("all.html").render(**context)


# ---------------------------------------------------------------------------------------------- helpers


@lru_cache(maxsize=1 << 18)  # a build names each product's pages and photos many times over
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


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


class Urls:
    """Where a page's links point: absolute under ``base_url`` when it is set, else relative to the page."""

    def __init__(self, base_url: str | None, folder: str = "") -> None:
        self.base, self.folder = base_url, folder
        self.root = "../" * folder.count("/") + ("../" if folder else "")

    def link(self, path: str) -> str:
        """Relative link from a page in ``folder`` to ``path`` (relative to the site root; '' is the home page)."""
        path = path or "index.html"
        if self.folder and path.startswith(self.folder + "/"):
            return path[len(self.folder) + 1:]
        return self.root + path

    def absolute(self, path: str) -> str:
        """Absolute URL of ``path`` under ``base_url``, or the relative link when it is unset."""
        if self.base:  # the home page is index.html, as every link to it says, not the bare folder
            return self.base + (path or "index.html")
        return self.link(path)

    def canonical(self, path: str) -> str:
        return self.absolute(path)


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


# ---------------------------------------------------------------------------------------------- photos


@lru_cache(maxsize=4096)
def _size_folders(folder: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """Sibling folders holding other sizes of the photos in ``folder`` (``images`` -> ``images_224``, ...),
    each with the names of its files (listed once per build)."""
    path = Path(folder)
    parent = path.parent
    try:
        siblings = sorted(d for d in parent.iterdir() if d.is_dir() and d.name.startswith(path.name + "_"))
    except OSError:
        return ()
    return tuple((str(d), frozenset(os.listdir(d))) for d in siblings)


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) of a photo from its header (Pillow reads no pixels until asked), or None when it does
    not decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None


def photo_sources(src: str | None, larger: bool = True, known: dict[str, list] | None = None,
                  seen: dict[str, list] | None = None) -> list[tuple[str, int, int, str]]:
    """Every readable size of a product photo, ``(path, width, height, stamp)``, smallest first: the catalogue's
    photo and, with ``larger``, the file of the same name in each sibling size folder (``images_224/``).
    ``stamp`` is the file's size and modification time. ``known`` (path -> [stamp, width, height], from the last
    build) spares reading an unchanged photo's header again; ``seen`` collects the sizes of this one."""
    if not src:
        return []
    try:
        st = os.stat(src)
    except OSError:
        return []
    if not stat.S_ISREG(st.st_mode):
        return []
    paths = [(src, f"{st.st_size}:{st.st_mtime_ns}")]
    if larger:
        folder, name = os.path.split(src)
        for d, names in _size_folders(folder):
            if name in names:
                path = os.path.join(d, name)
                try:
                    other = os.stat(path)
                except OSError:
                    continue
                paths.append((path, f"{other.st_size}:{other.st_mtime_ns}"))
    found: dict[int, tuple[str, int, int, str]] = {}
    for path, stamp in paths:
        last = known.get(path) if known else None
        size = (last[1], last[2]) if last and last[0] == stamp else image_size(path)
        if size and seen is not None:
            seen[path] = [stamp, size[0], size[1]]
        if size and size[0] > 0 and size[1] > 0 and size[0] not in found:
            found[size[0]] = (path, size[0], size[1], stamp)
    return [found[w] for w in sorted(found)]


def link_image(src: str | None, images_dir: AnyPath, product_id: str, content_hash: str | None,
               suffix: str = "", stamp: str | None = None, existing: set[str] | None = None) -> str | None:
    """Copy (or upload) a product photo into ``images_dir``; return its file name, or None if unreadable.

    ``suffix`` names another size of the same photo (``-224w``): its name also carries a digest of the file's
    size and time (``stamp``), since the content hash only covers the catalogue's own photo. ``existing``: the
    names already in ``images_dir`` (saves a lookup per photo)."""
    if not src or not os.path.isfile(src):
        return None
    ext = Path(src).suffix.lower()
    ext = ext if ext in IMAGE_EXTS else ".img"
    tag = ""
    if suffix:
        if stamp is None:
            st = os.stat(src)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        tag = "-" + hashlib.sha1(stamp.encode()).hexdigest()[:6]
    name = f"{safe_name(product_id, 40)}-{(content_hash or '')[:10] or 'x'}{suffix}{tag}{ext}"
    if existing is not None and name in existing:
        return name
    target = images_dir / name
    if existing is None and target.exists():
        return name
    # the bytes are copied, atomically like every artifact: a hard link would publish whatever file the
    # catalogue pointed at and let a later edit of the source change the published site
    with atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)
    return name


@dataclass(frozen=True)
class Photo:
    """A product photo as published: file names under ``images/`` and sizes, smallest first."""

    files: tuple[tuple[str, int, int], ...]  # (name, width, height)

    def image(self, root: str) -> dict[str, Any]:
        """``{src, srcset, width, height}`` for an ``<img>`` on a page ``root`` away from the site root: the
        largest size as ``src`` (and its width and height), every size in ``srcset`` when there are several."""
        return dict(_photo_image(self, root))

    @property
    def largest(self) -> tuple[str, int, int]:
        return self.files[-1]


@lru_cache(maxsize=65536)
def _photo_image(photo: Photo, root: str) -> tuple[tuple[str, Any], ...]:
    name, width, height = photo.files[-1]
    srcset = ", ".join(f"{root}images/{n} {w}w" for n, w, _ in photo.files) if len(photo.files) > 1 else ""
    return (("src", f"{root}images/{name}"), ("srcset", srcset), ("width", width), ("height", height))


def publish_photos(pids: set[str], by_id: dict[str, dict[str, Any]], images_dir: AnyPath,
                   cfg: SiteConfig, known: dict[str, list] | None = None,
                   seen: dict[str, list] | None = None) -> dict[str, Photo | None]:
    """Link every size of the photos of ``pids`` into ``images_dir``: product id -> Photo (None: unreadable).
    ``known``/``seen``: photo sizes of the last build and of this one (see :func:`photo_sources`)."""
    _size_folders.cache_clear()  # folders may have changed since the last build in this process
    existing = None if is_remote(images_dir) else set(os.listdir(images_dir))
    out: dict[str, Photo | None] = {}
    for pid in sorted(pids):
        info = by_id.get(pid, {})
        if not cfg.link_images:
            out[pid] = None
            continue
        files = []
        for path, width, height, stamp in photo_sources(info.get("image_path"), cfg.larger_images, known, seen):
            extra = path != info.get("image_path")
            name = link_image(path, images_dir, pid, info.get("content_hash"), f"-{width}w" if extra else "",
                              stamp, existing)
            if name:
                files.append((name, width, height))
        out[pid] = Photo(tuple(files)) if files else None
    return out


# ---------------------------------------------------------------------------------------------- counts


def _pair(key: Any, value: Any) -> str:
    return f"{str(key or '').strip().lower()}\x1f{str(value or '').strip().lower()}"


def match_counts(assignments: AnyPath, products: AnyPath, feeds: list[dict[str, Any]],
                 cfg: FeedsConfig) -> list[int | None]:
    """How many catalogue products match each feed's topic, before the feed keeps its best ``max_products``:
    counted from the assignments as the feeds stage matches (keys and values trimmed and lowercased,
    confidence >= ``feeds.min_confidence``; ``strict``: every attribute, ``overlap``/``ann``: ``min_overlap``
    of them). Read part by part (assignments and products share their parts), so memory holds one part.
    ``ann`` also admits embedding neighbours, which only the feeds stage sees: its count is a lower bound.
    None for every feed when the run has no assignments."""
    if not as_path(assignments).exists():
        return [None] * len(feeds)
    wants: list[tuple[list[str], int]] = []
    for f in feeds:
        pairs = sorted({_pair(a["key"], a["value"]) for a in f["attributes"] or []
                        if str(a["key"] or "").strip() and str(a["value"] or "").strip()})
        n = len(pairs)
        if cfg.matching == "strict":
            need = n
        elif cfg.min_overlap >= 1:
            need = int(cfg.min_overlap)
        else:
            need = math.ceil(n * cfg.min_overlap - 1e-9)
        wants.append((pairs, min(n, max(1, need))))
    needed = sorted({p for pairs, _ in wants for p in pairs})
    totals = [0] * len(feeds)
    if not needed:
        return totals
    needed_array = pa.array(needed, pa.string())
    for part in list_parts(as_path(assignments)):
        table = read_part(assignments, part.name, ASSIGNMENTS, ["product_id", "key", "value", "confidence"])
        ids = read_part(products, part.name, PRODUCTS, ["product_id"])["product_id"]
        key = pc.utf8_lower(pc.utf8_trim_whitespace(table["key"]))
        value = pc.utf8_lower(pc.utf8_trim_whitespace(table["value"]))
        pair = pc.binary_join_element_wise(key, value, "\x1f")
        conf = pc.fill_null(pc.cast(table["confidence"], pa.float64()), 1.0)
        keep = pc.and_(pc.and_(pc.greater_equal(conf, float(cfg.min_confidence)), pc.is_in(pair, needed_array)),
                       pc.is_in(table["product_id"], ids))
        rows = table.filter(keep)
        carriers: dict[str, set[str]] = {}
        for pid, p in zip(rows["product_id"].to_pylist(), pc.filter(pair, keep).to_pylist()):
            carriers.setdefault(p, set()).add(pid)
        for i, (pairs, need) in enumerate(wants):
            sets = [carriers.get(p, set()) for p in pairs]
            if not sets:
                continue
            if need == len(sets):
                sets.sort(key=len)
                totals[i] += len(sets[0].intersection(*sets[1:]))
            else:
                seen = Counter(pid for s in sets for pid in s)
                totals[i] += sum(1 for c in seen.values() if c >= need)
    return totals


# ---------------------------------------------------------------------------------------------- the model


@dataclass
class Collection:
    """One published collection, as every page that shows it needs it."""

    index: int
    name: str  # file name stem under c/
    slug: str
    title: str  # display title, made unique among the collections
    attributes: list[dict[str, str]]
    hub: str  # hub file stem under h/
    facets: list[tuple[str, str]]  # (key, value) of the attributes other than the hub key
    cards: int  # products shown as cards (near-identical products share one)
    shown: int  # products shown, variants included
    matched: int | None  # products that match (None: unknown)
    thumb: Photo | None  # the lead product's photo

    @property
    def href(self) -> str:
        return f"c/{self.name}.html"

    @property
    def size(self) -> int:
        """The number shown beside a link: products that match, or those shown when that is unknown."""
        return self.matched if self.matched is not None else self.shown


@dataclass
class Hub:
    name: str
    title: str
    value: str | None  # the hub attribute's value (None: collections without one)
    members: list[int]  # collection indexes, biggest first
    main: int | None  # the collection of the hub value alone ("T-shirt"), when there is one

    @property
    def href(self) -> str:
        return f"h/{self.name}.html"


def build_model(feeds: list[dict[str, Any]], photos: dict[str, Photo | None], matched: list[int | None],
                cfg: SiteConfig) -> tuple[list[Collection], list[Hub]]:
    """Collections (with unique display titles) and hubs (biggest first) of ``feeds``."""
    key = cfg.hub_key.strip().lower()
    titles = [f["title"] or f["slug"] for f in feeds]
    clash = Counter(t.casefold() for t in titles)
    cols: list[Collection] = []
    for i, f in enumerate(feeds):
        attrs = f["attributes"] or []
        title = titles[i]
        if clash[title.casefold()] > 1:  # two collections of one title: tell them apart by their attributes
            title = f"{title} ({', '.join(a['value'] for a in attrs) or f['slug']})"
        hub_values = [a["value"] for a in attrs if (a["key"] or "").strip().lower() == key]
        shown = sum(1 + len(p.get("variants") or []) for p in f["products"])
        lead = f["products"][0]["product_id"] if f["products"] else None
        count = matched[i]
        cols.append(Collection(
            index=i, name=safe_name(f["slug"]), slug=f["slug"], title=title, attributes=attrs,
            hub=safe_name(hub_values[0].strip().lower()) if hub_values else OTHER_HUB,
            facets=[(a["key"], a["value"]) for a in attrs if (a["key"] or "").strip().lower() != key],
            cards=len(f["products"]), shown=shown, matched=max(count, shown) if count is not None else None,
            thumb=photos.get(lead) if lead else None))
    if len({c.title.casefold() for c in cols}) < len(cols):  # attributes did not tell them apart: the slug does
        clash = Counter(c.title.casefold() for c in cols)
        for c in cols:
            if clash[c.title.casefold()] > 1:
                c.title = f"{c.title} [{c.slug}]"
    groups: dict[str, list[int]] = {}
    for c in cols:
        groups.setdefault(c.hub, []).append(c.index)
    hubs = []
    for name, members in groups.items():
        members.sort(key=lambda j: (-cols[j].size, cols[j].title.casefold(), cols[j].slug))
        main = next((j for j in members if not cols[j].facets and name != OTHER_HUB), None)
        value = None if name == OTHER_HUB else next(a["value"] for a in cols[members[0]].attributes
                                                     if (a["key"] or "").strip().lower() == key)
        title = "Other collections" if value is None else (cols[main].title if main is not None
                                                          else capitalize(value.strip()))
        hubs.append(Hub(name, title, value, members, main))
    hubs.sort(key=lambda h: (h.value is None, -hub_size(h, cols), -len(h.members), h.title.casefold()))
    return cols, hubs


def hub_size(hub: Hub, cols: list[Collection]) -> int:
    """A hub's weight: its own collection's size ("T-shirt"), else its biggest collection's."""
    return cols[hub.main].size if hub.main is not None else max(cols[j].size for j in hub.members)


def _tile(c: Collection, urls: Urls) -> dict[str, Any]:
    return {"title": c.title, "href": urls.link(c.href), "size": c.size,
            "thumb": c.thumb.image(urls.root) if c.thumb else _placeholder(urls.root)}


def _placeholder(root: str) -> dict[str, Any]:
    return {"src": f"{root}static/{PLACEHOLDER}", "srcset": "", "width": PLACEHOLDER_SIZE[0],
            "height": PLACEHOLDER_SIZE[1]}


def _head(cfg: SiteConfig, urls: Urls, path: str, page_title: str, description: str, og_title: str,
          image: tuple[str, int, int] | None, jsonld: list[dict[str, Any]], prev: str | None = None,
          next_: str | None = None) -> dict[str, Any]:
    """What ``base.html`` puts in ``<head>``; ``prev``/``next_``: paths (from the site root) of the pages before
    and after a page of a paged collection."""
    og_image = None
    if image:
        og_image = {"url": urls.absolute(f"images/{image[0]}"), "width": image[1], "height": image[2]}
    return {"site_title": cfg.title, "root": urls.root, "generated": None, "page_title": page_title,
            "description": description, "canonical": urls.canonical(path),
            "og_url": urls.absolute(path) if urls.base else None, "og_title": og_title, "og_image": og_image,
            "jsonld": jsonld, "prev": Path(prev).name if prev else None, "next": Path(next_).name if next_ else None,
            "head_prev": urls.absolute(prev) if prev else None, "head_next": urls.absolute(next_) if next_ else None}


def _breadcrumbs(urls: Urls, trail: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Breadcrumb links (the last is the current page) and their ``BreadcrumbList``."""
    crumbs = [{"title": t, "href": urls.link(p)} for t, p in trail]
    data = {"@context": "https://schema.org", "@type": "BreadcrumbList",
            "itemListElement": [{"@type": "ListItem", "position": k, "name": t, "item": urls.absolute(p)}
                                for k, (t, p) in enumerate(trail, start=1)]}
    return crumbs, data


def _join(words: list[str], last: str = "and") -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def _attrs_text(attrs: list[dict[str, str]]) -> str:
    return ", ".join(f"{a['key']} {a['value']}" for a in attrs)


def page_contexts(feeds: list[dict[str, Any]], products: dict[str, dict[str, Any]], photos: dict[str, Photo | None],
                  cfg: SiteConfig, cols: list[Collection] | None = None,
                  hubs: list[Hub] | None = None, similar: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Relative file path (under site/) -> render context of every collection page (``similar``: products
    with a "similar items" page, which their cards link to)."""
    if cols is None or hubs is None:
        cols, hubs = build_model(feeds, photos, [None] * len(feeds), cfg)
    hub_by_name = {h.name: h for h in hubs}
    related = related_collections(feeds, cfg.related)
    urls = Urls(cfg.base_url, "c")
    out: dict[str, dict[str, Any]] = {}
    known: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # product id -> card fields, JSON-LD Product
    for i, f in enumerate(feeds):
        c = cols[i]
        per = cfg.products_per_page
        chunks = [f["products"][s:s + per] for s in range(0, len(f["products"]), per)] or [[]]
        files = [c.href] + [f"c/{c.name}--{n}.html" for n in range(2, len(chunks) + 1)]
        # titles only: a related collection growing does not rewrite every page that links it
        rel = [{"title": cols[j].title, "href": f"{cols[j].name}.html"} for j in related[i]]
        hub = hub_by_name[c.hub]
        crumbs, crumb_data = _breadcrumbs(urls, [("Home", ""), (hub.title, hub.href), (c.title, c.href)])
        for page, (path, chunk) in enumerate(zip(files, chunks), start=1):
            items, listed = [], []
            first = (page - 1) * per
            for pos, p in enumerate(chunk, start=first + 1):
                pid = p["product_id"]
                if pid not in known:
                    known[pid] = _product(pid, products.get(pid, {}), photos.get(pid), urls)
                base, product = known[pid]
                n_variants = len(p.get("variants") or [])
                items.append(base | {"score": p["score"], "variants": n_variants + 1 if n_variants else 0,
                                     "similar": urls.link(similar_path(pid)) if similar and pid in similar else None})
                listed.append({"@type": "ListItem", "position": pos, "item": product})
            description = collection_description(c, page, len(files), first, len(chunk), items)
            lead = photos.get(chunk[0]["product_id"]) if chunk else None
            page_title = (f"{c.title}: {c.size:,} products · {cfg.title}" if page == 1
                          else f"{c.title}, page {page} of {len(files)} · {cfg.title}")
            data = {"@context": "https://schema.org", "@type": "CollectionPage", "name": page_title,
                    "description": description, "url": urls.absolute(path),
                    "isPartOf": {"@type": "WebSite", "name": cfg.title, "url": urls.absolute("")},
                    "mainEntity": {"@type": "ItemList", "numberOfItems": len(listed), "itemListElement": listed}}
            prev = files[page - 2] if page > 1 else None
            nxt = files[page] if page < len(files) else None
            out[path] = _head(cfg, urls, path, page_title, description, c.title, lead.largest if lead else None,
                              [data, crumb_data], prev, nxt) | {
                "slug": f["slug"], "title": c.title, "attributes": c.attributes, "size": c.size,
                "matched": c.matched, "shown": c.shown, "card_count": c.cards, "first": first + 1,
                "last": first + len(chunk), "page": page, "pages": len(files), "products": items, "related": rel,
                "breadcrumbs": crumbs, "hub": {"title": hub.title, "href": urls.link(hub.href)},
                "page_links": [{"n": n, "href": Path(p).name} for n, p in enumerate(files, start=1)],
            }
    return out


def _product(pid: str, info: dict[str, Any], photo: Photo | None, urls: Urls) -> tuple[dict[str, Any], dict[str, Any]]:
    """A product's card fields and its JSON-LD ``Product`` (name, image, brand, url, offers with price and
    currency), computed once per product: a product appears on many pages."""
    title = info.get("title") or pid
    url = clean_url(info.get("url"))  # checked again: a products file may come from elsewhere
    price = info.get("price")
    card = {"product_id": pid, "title": title, "brand": info.get("brand"), "price": price, "url": url,
            "price_text": price_text(price, info.get("currency")),
            "image": photo.image(urls.root) if photo else _placeholder(urls.root)}
    product: dict[str, Any] = {"@type": "Product", "name": title}
    if photo:
        product["image"] = urls.absolute(f"images/{photo.largest[0]}")
    if info.get("brand"):
        product["brand"] = {"@type": "Brand", "name": info["brand"]}
    if url:
        product["url"] = url
    if price is not None and price == price and info.get("currency"):
        product["offers"] = {"@type": "Offer", "price": f"{price:.2f}", "priceCurrency": info["currency"]} | (
            {"url": url} if url else {})
    return card, product


def similar_path(pid: str) -> str:
    """The "similar items" page of a product, under site/."""
    return f"s/{safe_name(pid)}.html"


def similar_contexts(feeds: list[dict[str, Any]], products: dict[str, dict[str, Any]],
                     photos: dict[str, Photo | None], cfg: SiteConfig, cols: list[Collection],
                     similar: dict[str, list[tuple[str, float]]]) -> dict[str, dict[str, Any]]:
    """Relative file path -> render context of each product's "similar items" page: the product, its nearest
    products in the visual index (``similar``: product id -> [(id, score)], shown products only) and the
    collections that show it. Small by design: ``site.similar`` cards and links, no paging."""
    urls = Urls(cfg.base_url, "s")
    shows: dict[str, list[int]] = {}
    for i, f in enumerate(feeds):
        for p in f["products"]:
            shows.setdefault(p["product_id"], []).append(i)
    cards: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def card(pid: str) -> tuple[dict[str, Any], dict[str, Any]]:
        if pid not in cards:
            base, product = _product(pid, products.get(pid, {}), photos.get(pid), urls)
            cards[pid] = (base | {"similar": urls.link(similar_path(pid)) if pid in similar else None}, product)
        return cards[pid]

    out: dict[str, dict[str, Any]] = {}
    for pid, hits in similar.items():
        path = similar_path(pid)
        lead, lead_ld = card(pid)
        lead = lead | {"similar": None}  # this page
        items = [card(other)[0] | {"score": score} for other, score in hits]
        listed = [{"@type": "ListItem", "position": n, "item": card(other)[1]} for n, (other, _) in
                  enumerate(hits, start=1)]
        in_cols = [cols[i] for i in shows.get(pid, [])[:cfg.related or 6]]
        title = lead["title"]
        page_title = f"Similar to {title} · {cfg.title}"
        brand = f" by {lead['brand']}" if lead.get("brand") else ""
        description = (f"{len(items)} products similar to {title}{brand}, chosen by their photos and titles, and "
                       f"the collections that show it.")
        crumbs, crumb_data = _breadcrumbs(urls, [("Home", ""), (f"Similar to {title}", path)])
        data = {"@context": "https://schema.org", "@type": "CollectionPage", "name": page_title,
                "description": description, "url": urls.absolute(path), "about": lead_ld,
                "mainEntity": {"@type": "ItemList", "numberOfItems": len(listed), "itemListElement": listed}}
        photo = photos.get(pid)
        out[path] = _head(cfg, urls, path, page_title, description, f"Similar to {title}",
                          photo.largest if photo else None, [data, crumb_data]) | {
            "title": title, "product": lead, "products": items, "breadcrumbs": crumbs,
            "collections": [{"title": c.title, "href": urls.link(c.href)} for c in in_cols]}
    return out


def page_digest(ctx: Any) -> str:
    """SHA-256 of a render context's JSON (contexts are built in a fixed order, so keys need no sorting)."""
    return hashlib.sha256(json.dumps(ctx, ensure_ascii=False, separators=(",", ":"), default=str)
                          .encode("utf-8", "surrogatepass")).hexdigest()


def collection_description(c: Collection, page: int, pages: int, first: int, n: int,
                           items: list[dict[str, Any]]) -> str:
    """A collection page's meta description, from its attributes, counts and the page's own products (so that
    page 2 never repeats page 1's)."""
    attrs = _attrs_text(c.attributes)
    prices = [p["price"] for p in items if p["price"] is not None and p["price"] == p["price"]]
    money = ""
    if prices:
        low, high = min(prices), max(prices)
        low_text = next(p["price_text"] for p in items if p["price"] == low)
        high_text = next(p["price_text"] for p in items if p["price"] == high)
        money = f", {low_text} to {high_text}" if low != high else f", {low_text}"
    brands = [b for b, _ in Counter(p["brand"] for p in items if p["brand"]).most_common(3)]
    by = f", by {_join(brands + ['more'])}" if brands else ""
    count = (f"{c.matched:,} products match" if c.matched is not None else f"{c.shown:,} products")
    shown = "" if c.matched is None or c.matched == c.shown else f", the best {c.shown:,} shown"
    if page == 1:
        return f"{c.title}: {count}{shown} ({attrs}). Products 1 to {n}{money}{by}."
    total = f" of {c.matched:,} that match" if c.matched is not None and c.matched > c.shown else ""
    return (f"{c.title}, page {page} of {pages}: products {first + 1} to {first + n} of the {c.shown:,} "
            f"shown{total} ({attrs}){money}{by}.")


def hub_contexts(cols: list[Collection], hubs: list[Hub], cfg: SiteConfig) -> dict[str, dict[str, Any]]:
    """Relative file path -> render context of every hub page: its biggest collections with a thumbnail, then
    every collection under each facet (key, then value) it has."""
    urls = Urls(cfg.base_url, "h")
    out = {}
    for hub in hubs:
        members = [cols[j] for j in hub.members]
        facets: dict[str, dict[str, list[Collection]]] = {}
        for c in members:
            for k, v in c.facets:
                facets.setdefault(k, {}).setdefault(v, []).append(c)
        sections = []
        for k in sorted(facets, key=lambda k: (-sum(len(v) for v in facets[k].values()), k)):
            values = sorted(facets[k].items(), key=lambda kv: (-max(c.size for c in kv[1]), kv[0]))
            sections.append({"key": k, "id": f"by-{safe_name(k)}", "values": [
                {"value": capitalize(v), "links": [{"title": c.title, "href": urls.link(c.href), "size": c.size}
                                                   for c in group]} for v, group in values]})
        popular = [_tile(c, urls) for c in members[:cfg.hub_popular]]
        crumbs, crumb_data = _breadcrumbs(urls, [("Home", ""), (hub.title, hub.href)])
        keys = [s["key"] for s in sections]
        names = _join([c.title for c in members[:3]] + (["more"] if len(members) > 3 else []))
        description = (f"{len(members):,} {hub.title} collections"
                       f"{' by ' + _join(keys) if keys else ''}: {names}.")
        page_title = f"{hub.title}: {len(members):,} collections · {cfg.title}"
        main = cols[hub.main] if hub.main is not None else None
        data = {"@context": "https://schema.org", "@type": "CollectionPage", "name": page_title,
                "description": description, "url": urls.absolute(hub.href),
                "isPartOf": {"@type": "WebSite", "name": cfg.title, "url": urls.absolute("")},
                "mainEntity": {"@type": "ItemList", "numberOfItems": len(members), "itemListElement": [
                    {"@type": "ListItem", "position": k, "name": c.title, "url": urls.absolute(c.href)}
                    for k, c in enumerate(members, start=1)]}}
        thumb = members[0].thumb
        out[hub.href] = _head(cfg, urls, hub.href, page_title, description, hub.title,
                              thumb.largest if thumb else None, [data, crumb_data]) | {
            "title": hub.title, "count": len(members), "breadcrumbs": crumbs, "popular": popular,
            "sections": sections, "main": _tile(main, urls) if main else None}
    return out


def home_context(cols: list[Collection], hubs: list[Hub], cfg: SiteConfig) -> dict[str, Any]:
    """The home page: hubs biggest first, each with its biggest ``home_collections`` collections."""
    urls = Urls(cfg.base_url)
    groups = [{"title": h.title, "href": urls.link(h.href), "count": len(h.members), "id": f"hub-{h.name}",
               "tiles": [_tile(cols[j], urls) for j in h.members[:cfg.home_collections]]} for h in hubs]
    names = _join([h.title for h in hubs[:6]] + (["more"] if len(hubs) > 6 else [])) if hubs else ""
    description = (f"{len(cols):,} shopping collections in {len(hubs):,} categories"
                   f"{': ' + names if names else ''}.")
    page_title = f"{cfg.title}: {len(cols):,} shopping collections"
    data = {"@context": "https://schema.org", "@type": "WebSite", "name": cfg.title, "url": urls.absolute(""),
            "description": description}
    lead = next((cols[h.members[0]].thumb for h in hubs if cols[h.members[0]].thumb), None)
    return _head(cfg, urls, "", page_title, description, cfg.title, lead.largest if lead else None, [data]) | {
        "count": len(cols), "groups": groups}


def all_context(cols: list[Collection], hubs: list[Hub], cfg: SiteConfig) -> dict[str, Any]:
    """The A-Z list of every collection, with the title filter (the site's search)."""
    urls = Urls(cfg.base_url)
    hub_title = {h.name: h.title for h in hubs}
    items = sorted(({"title": c.title, "href": urls.link(c.href), "size": c.size, "hub": hub_title[c.hub]}
                    for c in cols), key=lambda x: (x["title"].casefold(), x["href"]))
    description = f"Every one of the {len(cols):,} shopping collections, A to Z, with a search by title."
    page_title = f"All {len(cols):,} collections A to Z · {cfg.title}"
    crumbs, crumb_data = _breadcrumbs(urls, [("Home", ""), ("All collections", "collections.html")])
    return _head(cfg, urls, "collections.html", page_title, description, "All collections", None,
                 [crumb_data]) | {"collections": items, "count": len(items), "breadcrumbs": crumbs}


def alias_contexts(feeds: list[dict[str, Any]], cfg: SiteConfig) -> dict[str, dict[str, Any]]:
    """Relative file path (under site/) -> render context of the redirect page of every alias slug of a feed."""
    out: dict[str, dict[str, Any]] = {}
    urls = Urls(cfg.base_url, "c")
    for f in feeds:
        target = f"c/{safe_name(f['slug'])}.html"
        for alias in f.get("aliases") or []:
            out[f"c/{safe_name(alias)}.html"] = {"site_title": cfg.title, "title": f["title"] or f["slug"],
                                                 "target": urls.link(target), "canonical": urls.canonical(target)}
    return out


def tombstone_contexts(gone: list[str], cfg: SiteConfig) -> dict[str, dict[str, Any]]:
    """Relative file path -> render context of the tombstone page of each dropped slug (``feeds/changes.json``)."""
    home = Urls(cfg.base_url, "c").link("index.html")
    return {f"c/{safe_name(slug)}.html": {"site_title": cfg.title, "home": home} for slug in gone}


# ---------------------------------------------------------------------------------------------- sitemap


def sitemap_files(entries: list[tuple[str, str]], base_url: str | None, max_urls: int) -> dict[str, str]:
    """File name -> XML of the sitemap of ``entries`` ((path, lastmod), in order): ``sitemap.xml`` alone, or,
    past ``max_urls``, ``sitemap.xml`` as an index of ``sitemap-1.xml``, ... of at most ``max_urls`` URLs each.
    URLs are absolute under ``base_url``; without it they stay relative to the site root (set it to publish)."""
    def loc(path: str) -> str:
        return xml_escape((base_url or "") + (path or "index.html"))

    def urlset(chunk: list[tuple[str, str]]) -> str:
        rows = "".join(f"<url><loc>{loc(p)}</loc><lastmod>{m}</lastmod></url>\n" for p, m in chunk)
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{rows}</urlset>\n')

    if len(entries) <= max_urls:
        return {"sitemap.xml": urlset(entries)}
    files = {}
    index = []
    for n, start in enumerate(range(0, len(entries), max_urls), start=1):
        chunk = entries[start:start + max_urls]
        files[f"sitemap-{n}.xml"] = urlset(chunk)
        index.append((f"sitemap-{n}.xml", max(m for _, m in chunk)))
    rows = "".join(f"<sitemap><loc>{loc(p)}</loc><lastmod>{m}</lastmod></sitemap>\n" for p, m in index)
    files["sitemap.xml"] = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                            f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{rows}'
                            '</sitemapindex>\n')
    return files


def robots_txt(base_url: str | None) -> str:
    if base_url:
        return f"User-agent: *\nAllow: /\n\nSitemap: {base_url}sitemap.xml\n"
    return ("User-agent: *\nAllow: /\n\n# sitemap.xml lists every page; set site.base_url to name it here\n"
            "# (robots.txt and sitemaps need absolute URLs)\n")


# ---------------------------------------------------------------------------------------------- the build


def state_path(out: AnyPath) -> AnyPath:
    """Where the digests of a site folder live: beside it (``site.pages.json``), never published in it."""
    return out.parent / f"{out.name}.pages.json"


def build_site(feeds: list[dict[str, Any]], products: list[dict[str, Any]], out: str | AnyPath,
               cfg: SiteConfig, matched: list[int | None] | None = None, now: str | None = None,
               similar: dict[str, list[tuple[str, float]]] | None = None,
               gone: list[str] | None = None) -> SiteCounts:
    """Write (incrementally) the site for ``feeds`` under ``out``; returns counts of what changed.

    ``matched``: per feed, how many products match (see :func:`match_counts`); ``now``: the ``lastmod`` of
    pages whose content changed (default: the current UTC time); ``similar``: product id -> its similar shown
    products (see :func:`similar_products`), one "similar items" page each; ``gone``: dropped slugs, given
    tombstone pages."""
    out = as_path(out)
    now = now or datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    images_dir = out / "images"
    make_dirs(images_dir, out / "c", out / "h", out / "s")
    similar = similar or {}
    by_id = {p["product_id"]: p for p in products}
    wanted = {p["product_id"] for f in feeds for p in f["products"]}
    state_file = state_path(out)
    state = read_json(state_file, default={}) or {}
    if state.get("format") != STATE_FORMAT:
        state = {}
    photo_sizes: dict[str, list] = {}
    photos = publish_photos(wanted, by_id, images_dir, cfg, state.get("photo_sizes"), photo_sizes)
    cols, hubs = build_model(feeds, photos, matched or [None] * len(feeds), cfg)
    pages = page_contexts(feeds, by_id, photos, cfg, cols, hubs, similar)
    redirects = alias_contexts(feeds, cfg)
    jobs = ([("index.html", home_context(cols, hubs, cfg), render_index),
             ("collections.html", all_context(cols, hubs, cfg), render_all)]
            + [(path, ctx, render_hub) for path, ctx in hub_contexts(cols, hubs, cfg).items()]
            + [(path, ctx, render_page) for path, ctx in pages.items()]
            + [(path, ctx, render_redirect) for path, ctx in redirects.items() if path not in pages]
            + [(path, ctx, render_similar) for path, ctx in similar_contexts(feeds, by_id, photos, cfg, cols,
                                                                             similar).items()]
            + [(path, ctx, render_gone) for path, ctx in tombstone_contexts(gone or [], cfg).items()
               if path not in pages and path not in redirects])
    previous = state.get("pages", {})
    current: dict[str, dict[str, str]] = {}
    written = 0
    for path, ctx, render in jobs:
        content = page_digest(ctx)
        digest = json_digest([template_digest(), content])
        old = previous.get(path) or {}
        lastmod = old.get("lastmod") if old.get("content") == content and old.get("lastmod") else now
        current[path] = {"digest": digest, "content": content, "lastmod": lastmod}
        if old.get("digest") != digest or not (out / path).exists():
            write_text(out / path, render(ctx))
            written += 1
    removed = 0
    for old in sorted(set(previous) - set(current)):
        if (out / old).is_file():
            (out / old).unlink()
            removed += 1
    for folder in ("c", "h", "s"):  # pages left by an interrupted run that never recorded them
        for stray in list_files(out / folder, "*.html"):
            if f"{folder}/{stray.name}" not in current:
                stray.unlink()
                removed += 1
    used = {name for photo in photos.values() if photo for name, _, _ in photo.files}
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
    # the sitemap lists the landing pages; a product's similar-items page is reached through its cards
    indexed = [(path, current[path]["lastmod"]) for path, _, render in jobs
               if render not in (render_redirect, render_similar, render_gone)]
    sitemaps = sitemap_files(indexed, cfg.base_url, cfg.sitemap_max_urls)
    sitemaps["robots.txt"] = robots_txt(cfg.base_url)
    for name, text in sitemaps.items():
        if not (out / name).exists() or (out / name).read_text(encoding="utf-8") != text:
            write_text(out / name, text)
    for stale in list_files(out, "sitemap-*.xml"):
        if stale.name not in sitemaps:
            stale.unlink()
    write_text(state_file, json.dumps({"format": STATE_FORMAT, "pages": current, "photo_sizes": photo_sizes},
                                      ensure_ascii=False, separators=(",", ":")))
    return {"collections": len(feeds), "hubs": len(hubs), "pages": len(pages), "redirects": len(redirects),
            "tombstones": sum(render is render_gone for _, _, render in jobs),
            "pages_written": written, "pages_unchanged": len(current) - written, "pages_removed": removed,
            "similar_pages": len(similar), "sitemap_urls": len(indexed), "sitemaps": sum(1 for n in sitemaps if n.endswith(".xml")),
            "images": len(used), "images_removed": images_removed,
            "larger_photos": sum(1 for p in photos.values() if p and len(p.files) > 1),
            "missing_images": sum(1 for v in photos.values() if not v),
            "matched_known": sum(1 for c in cols if c.matched is not None)}


@dataclass(frozen=True)
class SiteInputs(StageInputs):
    """The site stage reads the feeds, the catalogue, and ``assignments/`` (match counts, the visual index)."""

    outputs = ("site",)
    catalog: AnyPath = artifact("catalog")
    feeds: AnyPath = artifact("feeds")
    assignments: AnyPath = artifact("assignments")


class SiteCounts(TypedDict):
    collections: int
    hubs: int
    pages: int
    redirects: int
    tombstones: int
    pages_written: int
    pages_unchanged: int
    pages_removed: int
    similar_pages: int
    sitemap_urls: int
    sitemaps: int
    images: int
    images_removed: int
    larger_photos: int
    missing_images: int
    matched_known: int


def run_site(cfg: SiteConfig, feeds_cfg: FeedsConfig, inputs: SiteInputs,
             out: str | AnyPath | None = None) -> SiteCounts:
    """Stage entry point: feeds + catalogue (+ assignments, for the match counts) -> site/ (see module docstring);
    ``feeds_cfg``: how the feeds stage matched products; ``out``: build the site in another folder instead
    (benchmarks: the same run under another base URL)."""
    layout = inputs.layout
    feeds = read_feeds(layout)
    shown = {p["product_id"] for f in feeds for p in f["products"]}  # the catalogue is read part by part for these
    products = select_rows(layout.products, PRODUCTS, "product_id", shown,
                           ["product_id", "title", "brand", "price", "currency", "image_path", "content_hash",
                            "url"]).to_pylist()
    matched = match_counts(inputs.assignments / "assignments.parquet", layout.products, feeds, feeds_cfg)
    similar = similar_products(layout, shown, cfg.similar, cache=layout.root / "site.similar.parquet")
    changes = read_json(layout.dir("feeds") / "changes.json", default={}) or {}
    return build_site(feeds, products, out if out is not None else layout.dir("site"), cfg, matched,
                      similar=similar, gone=changes.get("gone") or [])


SIMILAR_KEY = b"pinlanding.similar_key"


def similar_products(layout: Any, shown: set[str], k: int, cache: AnyPath | None = None
                     ) -> dict[str, list[tuple[str, float]]]:
    """Product id -> its ``k`` most similar products among ``shown`` (the products the site publishes), from the
    run's visual index; empty when ``k`` is 0 or the run has no index.

    The all-pairs search is most of a site build, and its answer depends only on the index, ``shown`` and ``k``:
    ``cache`` keeps the last answer with a digest of the three, so a rebuild whose feeds changed (a merchandiser's
    decision) reuses it while they are the same."""
    from pinlanding.encoders.visual import VisualIndex

    folder = layout.visual_index
    if k <= 0 or not shown or not is_parted(folder):
        return {}
    key = json_digest([tree_digest(folder), sorted(shown), k]).encode()
    if cache is not None and as_path(cache).exists():
        if (read_schema(cache, SIMILAR).metadata or {}).get(SIMILAR_KEY) == key:
            table = read_table(cache, SIMILAR)
            return {pid: list(zip(ids, scores)) for pid, ids, scores in
                    zip(*(table.column(c).to_pylist() for c in ("product_id", "similar", "score")))}
    index = VisualIndex.load(folder, keep=shown)
    ids = [str(pid) for pid in index.ids_]
    hits = index.search(index.vectors_, k, ids)
    found = {pid: [(str(q), float(s)) for q, s in hit] for pid, hit in zip(ids, hits) if hit}
    if cache is not None:
        table = pa.table({"product_id": list(found), "similar": [[q for q, _ in v] for v in found.values()],
                          "score": [[s for _, s in v] for v in found.values()]}, schema=SIMILAR)
        write_table(table, cache, SIMILAR.with_metadata({SIMILAR_KEY: key}))
    return found
