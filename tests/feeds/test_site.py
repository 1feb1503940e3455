"""Landing pages: escaping, pagination, related links, incremental regeneration, removal, what is published."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pytest

from feedkit import HOSTILE, feed, published_run
from testlib import Run

from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import FEEDS, PRODUCTS
from pinlanding.feeds.config import SiteConfig
from pinlanding.feeds.site import build_site, page_contexts, render_page, run_site, safe_name, state_path


def hostile_context() -> dict:
    """The first page of a collection whose every text is hostile, related to another hostile one."""
    feeds = [feed("s", ["p"], title=HOSTILE, attrs=[("colour", "<red>")]),
             feed("r", ["p"], title="<i>rel</i>", attrs=[("colour", "<red>")])]
    products = {"p": {"product_id": "p", "title": 'x" onerror="alert(1)', "brand": "<b>B</b>", "price": 1299.0,
                      "currency": "INR", "url": 'https://m.example/p?a=1&b="2"'}}
    return page_contexts(feeds, products, {}, SiteConfig())["c/s.html"]


def test_render_page_escapes_merchant_text():
    html = render_page(hostile_context())
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert 'alt="x&#34; onerror=&#34;alert(1)"' in html  # attribute injection neutralized
    assert "<b>B</b>" not in html and "<i>rel</i>" not in html and "&lt;red&gt;" in html
    assert 'href="https://m.example/p?a=1&amp;b=&#34;2&#34;"' in html  # the product link, escaped
    assert '<html lang="en">' in html and "₹ 1,299" in html


def test_safe_name_never_escapes_folder():
    for slug in ["../../etc/passwd", "a/b", "", "ÅÄÖ", "<script>", "CON"]:
        name = safe_name(slug)
        assert re.fullmatch(r"[a-z0-9-]+", name), name
    assert safe_name("red-dresses") == "red-dresses"
    assert safe_name("Red Dresses") != safe_name("red-dresses")  # no collisions between distinct slugs


def run_ctx(layout, **site) -> Run:
    return Run(PipelineConfig.model_validate({"site": site}), layout)


def test_site_pages_images_pagination_and_related(tmp_path):
    layout = published_run(tmp_path)
    counts = call_stage(run_site, *run_ctx(layout, products_per_page=5))
    site = layout.root / "site"
    assert counts["collections"] == 3 and counts["hubs"] == 3 and counts["missing_images"] == 0
    assert sorted(p.name for p in (site / "c").iterdir()) == [
        "blue-shirts--2.html", "blue-shirts.html", "red-dresses--2.html", "red-dresses--3.html", "red-dresses.html",
        "women-shoes--2.html", "women-shoes.html"]
    assert sorted(p.name for p in (site / "h").iterdir()) == ["dress.html", "shirt.html", "shoes.html"]
    page = (site / "c" / "red-dresses.html").read_text()
    assert 'rel="next" href="red-dresses--2.html"' in page
    assert 'href="blue-shirts.html"' in page  # related: they share products p010, p011 and a colour key
    for src in re.findall(r'src="([^"]+)"', page):
        assert (site / "c" / src).resolve().is_file(), src
    assert "&lt;script&gt;" in (site / "index.html").read_text()
    assert len(list((site / "images").iterdir())) == 26  # products of all feeds, each once


def test_nothing_internal_is_published(tmp_path):
    layout = published_run(tmp_path)
    site = layout.root / "site"
    call_stage(run_site, *run_ctx(layout))
    published = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert not any(name.endswith(".json") for name in published), sorted(published)
    assert state_path(site) == layout.root / "site.pages.json" and state_path(site).is_file()
    state = json.loads(state_path(site).read_text())
    assert set(state["pages"]) == {p for p in published if p.endswith(".html")}
    assert {"index.html", "collections.html", "robots.txt", "sitemap.xml", "static/style.css"} <= published


def test_unchanged_rebuild_reads_no_photo(tmp_path, monkeypatch):
    layout = published_run(tmp_path)
    first = call_stage(run_site, *run_ctx(layout))
    monkeypatch.setattr("pinlanding.feeds.site.image_size", lambda path: pytest.fail(f"read {path} again"))
    again = call_stage(run_site, *run_ctx(layout))  # sizes come from site.pages.json while the files are unchanged
    assert again["pages_written"] == 0 and again["images"] == first["images"]


def test_incremental_regeneration_and_removal(tmp_path):
    layout = published_run(tmp_path)
    ctx = run_ctx(layout)
    site = layout.root / "site"
    first = build_site(*_inputs(layout), site, ctx.cfg.site, now="2026-01-01T00:00:00+00:00")
    before = {p.relative_to(site).as_posix(): p.stat().st_mtime_ns for p in site.rglob("*.html")}
    again = build_site(*_inputs(layout), site, ctx.cfg.site, now="2026-02-02T00:00:00+00:00")
    assert again["pages_written"] == 0 and again["pages_unchanged"] == first["pages_written"]
    assert {p.relative_to(site).as_posix(): p.stat().st_mtime_ns for p in site.rglob("*.html")} == before
    assert "2026-02-02" not in (site / "sitemap.xml").read_text()  # nothing changed: no lastmod moved

    feeds = read_table(layout.feeds, FEEDS).to_pylist()
    ids = [f"p{i:03d}" for i in range(36)]
    feeds = [f for f in feeds if f["slug"] != "women-shoes"]  # topic removed
    feeds[1] = feed("blue-shirts", ids[10:18], attrs=[("colour", "blue"), ("category", "shirt")])  # feed changed
    write_table(pa.Table.from_pylist(feeds, schema=FEEDS), layout.feeds, FEEDS)
    third = build_site(*_inputs(layout), site, ctx.cfg.site, now="2026-03-03T00:00:00+00:00")
    # red-dresses shares nothing with women-shoes, so its page (and related list) is untouched
    assert not (site / "c" / "women-shoes.html").exists() and not (site / "h" / "shoes.html").exists()
    assert third["pages_removed"] == 2  # the collection and its hub
    assert (site / "c" / "red-dresses.html").stat().st_mtime_ns == before["c/red-dresses.html"]
    assert (site / "h" / "dress.html").stat().st_mtime_ns == before["h/dress.html"]
    assert (site / "c" / "blue-shirts.html").stat().st_mtime_ns != before["c/blue-shirts.html"]
    assert third["pages_written"] == 4  # blue-shirts, its hub, the home page and the A-Z list
    assert third["images_removed"] == 10 and third["images"] == 18  # women-shoes' photos go; p016, p017 come
    assert len(list((site / "images").iterdir())) == 18
    assert "women-shoes" not in (site / "index.html").read_text()
    sitemap = (site / "sitemap.xml").read_text()
    assert "women-shoes" not in sitemap and "h/shoes.html" not in sitemap  # removed pages leave the sitemap
    lastmod = dict(re.findall(r"<loc>([^<]+)</loc><lastmod>([^<]+)</lastmod>", sitemap))
    assert lastmod["c/blue-shirts.html"].startswith("2026-03-03") and lastmod["index.html"].startswith("2026-03-03")
    assert lastmod["c/red-dresses.html"].startswith("2026-01-01")  # its content never changed


def _inputs(layout) -> tuple[list, list]:
    return read_table(layout.feeds, FEEDS).to_pylist(), read_table(layout.products, PRODUCTS).to_pylist()


def test_missing_image_gets_placeholder(tmp_path):
    layout = published_run(tmp_path)
    products = read_table(layout.products, PRODUCTS).to_pylist()
    products[0]["image_path"] = str(tmp_path / "nope.jpg")
    write_table(pa.Table.from_pylist(products, schema=PRODUCTS), layout.products, PRODUCTS)
    counts = call_stage(run_site, *run_ctx(layout))
    assert counts["missing_images"] == 1
    page = (layout.root / "site" / "c" / "red-dresses.html").read_text()
    assert 'src="../static/placeholder.svg"' in page and 'width="60" height="80"' in page
    assert (layout.root / "site" / "static" / "placeholder.svg").is_file()


def test_empty_feeds_give_an_empty_index(tmp_path):
    layout = published_run(tmp_path, feeds=[])
    counts = build_site([], [], Path(layout.root / "site"), SiteConfig())
    assert counts["collections"] == 0 and "0 collections" in (layout.root / "site" / "index.html").read_text()
    assert "<urlset" in (layout.root / "site" / "sitemap.xml").read_text()
