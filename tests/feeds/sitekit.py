"""Builders of the landing-page tests (imported as ``sitekit``): a published run whose products have their own
page (``url``), larger photos for some of them (``images_224/``) and assignments, so that pages carry product
links, srcset and honest match counts."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image

from feedkit import HOSTILE, feed, published_run, synthetic_assignments
from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ASSIGNMENTS, FEEDS, PRODUCTS
from pinlanding.feeds.site import run_site

BASE = "https://shop.example/c/"
BREAKOUT = 'Red </script><script>alert("ld")</script><!-- Dress'  # a title aimed at the JSON-LD block


def site_run(root: Path, feeds: list[dict] | None = None) -> RunLayout:
    """published_run plus: product urls (p005's is ``javascript:``, p006 has none), a 24x32 photo in
    ``images_224/`` for even products, assignments (colour by i % 3, category by i // 3 % 3, gender)."""
    layout = published_run(root, feeds)
    products = read_table(layout.products, PRODUCTS).to_pylist()
    larger = root / "images_224"
    larger.mkdir(exist_ok=True)
    for i, p in enumerate(products):
        p["url"] = {5: "javascript:alert(1)", 6: None}.get(i, f"https://merchant.example/p/{p['product_id']}?a=1&b=2")
        if i % 2 == 0:
            Image.new("RGB", (24, 32), (40 * (i % 6), 80, 120)).save(larger / Path(p["image_path"]).name)
    write_table(pa.Table.from_pylist(products, schema=PRODUCTS), layout.products, PRODUCTS)
    write_table(synthetic_assignments(read_table(layout.products, PRODUCTS)), layout.assignments, ASSIGNMENTS)
    return layout


def capped_feeds() -> list[dict]:
    """Feeds consistent with the assignments: "red" (no category: the "Other collections" hub) shows 5 of the
    12 red products, "red-dress" (a title aimed at the JSON-LD block) 4 of 4, "blue-shirts" 3 of 4, "dresses"
    (the dress hub's own collection, titled "Dress") 8 of 12."""
    red = [f"p{i:03d}" for i in range(0, 36, 3)]
    return [
        feed("red", red[:5], title="Red things", attrs=[("colour", "red")], judge=0.5),
        feed("red-dress", ["p000", "p009", "p018", "p027"], title=BREAKOUT,
             attrs=[("colour", "red"), ("category", "dress")], judge=0.9),
        feed("blue-shirts", ["p004", "p013", "p022"], attrs=[("colour", "blue"), ("category", "shirt")]),
        feed("dresses", [f"p{i:03d}" for i in range(36) if (i // 3) % 3 == 0][:8], title="Dress",
             attrs=[("category", "dress")]),
    ]


def build(layout: RunLayout, **site: Any) -> dict[str, Any]:
    return call_stage(run_site, PipelineConfig.model_validate({"site": site, "feeds": {"min_confidence": 0.0}}), layout)


def set_feeds(layout: RunLayout, feeds: list[dict]) -> None:
    write_table(pa.Table.from_pylist(feeds, schema=FEEDS), layout.feeds, FEEDS)


class Page(HTMLParser):
    """What the tests read from a page: head tags, JSON-LD blocks, links, images, text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.meta: dict[str, str] = {}
        self.links: dict[str, str] = {}  # <link rel> -> href
        self.anchors: list[dict[str, str]] = []
        self.images: list[dict[str, str]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.h1 = ""
        self.text: list[str] = []
        self._in: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "meta":
            self.meta[a.get("name") or a.get("property") or a.get("http-equiv") or "charset"] = a.get("content", "")
        elif tag == "link":
            self.links[a.get("rel", "")] = a.get("href", "")
        elif tag == "a":
            self.anchors.append(a)
        elif tag == "img":
            self.images.append(a)
        elif tag == "script":
            self.scripts.append((a, ""))
        if tag not in ("meta", "link", "img", "input", "br"):
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self._in:
            if self._in.pop() == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._in:
            return
        if self._in[-1] == "title":
            self.title += data
        elif self._in[-1] == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        else:
            if "h1" in self._in:
                self.h1 += data
            self.text.append(data)

    def jsonld(self) -> list[Any]:
        import json

        return [json.loads(text) for attrs, text in self.scripts if attrs.get("type") == "application/ld+json"]


def page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


__all__ = ["BASE", "BREAKOUT", "HOSTILE", "Page", "build", "capped_feeds", "page", "set_feeds", "site_run"]
