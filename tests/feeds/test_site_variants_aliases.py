"""Landing pages of distinct collections: a card notes its variants; a merged feed's slug redirects."""
from __future__ import annotations

import re

import pyarrow as pa

from feedkit import HOSTILE, feed, published_run
from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.pipeline import StageContext
from pinlanding.collections.schemas import FEEDS
from pinlanding.feeds.site import render_page, render_redirect, run_site, safe_name


def _ctx(layout) -> StageContext:
    return StageContext(PipelineConfig.model_validate({"site": {}}), layout)


def test_card_notes_its_variants_escaped():
    base = {"site_title": "Shop", "root": "../", "generated": None, "slug": "s", "title": "T", "attributes": [],
            "size": 2, "page": 1, "pages": 1, "prev": None, "next": None, "related": []}
    card = {"product_id": "p", "score": 1.0, "title": HOSTILE, "brand": "B", "price": 1.0, "price_text": "₹ 1",
            "image": "../images/p.jpg"}
    html = render_page(base | {"products": [card | {"variants": 3}, card | {"title": "alone", "variants": 0}]})
    assert html.count('class="variants"') == 1 and "3 variants" in html
    assert "<script>alert" not in html


def test_site_shows_variants_and_redirects_aliases(tmp_path):
    ids = [f"p{i:03d}" for i in range(36)]
    red = feed("red-dresses", ids[0:6], attrs=[("colour", "red"), ("category", "dress")])
    red["products"][1]["variants"] = ["p030", "p031"]
    red["aliases"] = ["red-dresses-for-women", "../<b>evil</b>"]
    layout = published_run(tmp_path, [red, feed("blue-shirts", ids[10:16])])
    counts = run_site(_ctx(layout))
    site = layout.root / "site"
    assert counts["redirects"] == 2
    page = (site / "c" / "red-dresses.html").read_text()
    assert page.count("3 variants") == 1  # the card and its two variants
    alias = (site / "c" / "red-dresses-for-women.html").read_text()
    assert '<meta http-equiv="refresh" content="0; url=red-dresses.html">' in alias
    assert '<link rel="canonical" href="red-dresses.html">' in alias
    evil = site / "c" / f"{safe_name('../<b>evil</b>')}.html"
    assert evil.is_file() and re.fullmatch(r"[a-z0-9-]+\.html", evil.name) and "<b>" not in evil.read_text()
    # the alias goes away with the merge
    feeds = read_table(layout.feeds, FEEDS).to_pylist()
    feeds[0]["aliases"] = []
    write_table(pa.Table.from_pylist(feeds, schema=FEEDS), layout.feeds, FEEDS)
    assert run_site(_ctx(layout))["redirects"] == 0
    assert not (site / "c" / "red-dresses-for-women.html").exists() and not evil.exists()


def test_redirect_page_escapes_title():
    html = render_redirect({"site_title": "Shop", "title": HOSTILE, "target": "x.html"})
    assert "<script>alert" not in html and 'url=x.html"' in html
