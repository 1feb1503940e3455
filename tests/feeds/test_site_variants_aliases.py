"""Landing pages of distinct collections: a card notes its variants; a merged feed's slug redirects."""
from __future__ import annotations

import re

import pyarrow as pa

from feedkit import HOSTILE, feed, published_run
from testlib import Run

from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import FEEDS
from pinlanding.feeds.config import SiteConfig
from pinlanding.feeds.site import page_contexts, render_page, render_redirect, run_site, safe_name


def _ctx(layout) -> Run:
    return Run(PipelineConfig.model_validate({"site": {}}), layout)


def test_card_notes_its_variants_escaped():
    f = feed("s", ["p", "q"], title="T")
    f["products"][0]["variants"] = ["v1", "v2"]
    products = {"p": {"title": HOSTILE, "brand": "B", "price": 1.0, "currency": "INR"},
                "q": {"title": "alone", "brand": "B", "price": 1.0, "currency": "INR"}}
    html = render_page(page_contexts([f], products, {}, SiteConfig())["c/s.html"])
    assert html.count('class="variants"') == 1 and "3 variants" in html
    assert "<script>alert" not in html
    assert "4 products match" not in html and "4 products" in html  # the cards stand for 4 products


def test_site_shows_variants_and_redirects_aliases(tmp_path):
    ids = [f"p{i:03d}" for i in range(36)]
    red = feed("red-dresses", ids[0:6], attrs=[("colour", "red"), ("category", "dress")])
    red["products"][1]["variants"] = ["p030", "p031"]
    red["aliases"] = ["red-dresses-for-women", "../<b>evil</b>"]
    layout = published_run(tmp_path, [red, feed("blue-shirts", ids[10:16])])
    counts = call_stage(run_site, *_ctx(layout))
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
    assert call_stage(run_site, *_ctx(layout))["redirects"] == 0
    assert not (site / "c" / "red-dresses-for-women.html").exists() and not evil.exists()


def test_redirect_page_escapes_title():
    html = render_redirect({"site_title": "Shop", "title": HOSTILE, "target": "x.html"})
    assert "<script>alert" not in html and 'url=x.html"' in html


def test_redirect_canonical_is_absolute_under_base_url(tmp_path):
    red = feed("red-dresses", [f"p{i:03d}" for i in range(6)])
    red["aliases"] = ["red-dresses-for-women"]
    layout = published_run(tmp_path, [red])
    call_stage(run_site, PipelineConfig.model_validate({"site": {"base_url": "https://shop.example/x"}}), layout)
    alias = (layout.root / "site" / "c" / "red-dresses-for-women.html").read_text()
    assert '<link rel="canonical" href="https://shop.example/x/c/red-dresses.html">' in alias
    assert "red-dresses-for-women" not in (layout.root / "site" / "sitemap.xml").read_text()  # noindex pages stay out
