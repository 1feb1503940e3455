"""Landing pages: escaping, pagination, related links, incremental regeneration, removal."""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from feedkit import HOSTILE, feed, published_run
from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.pipeline import StageContext
from pinlanding.collections.schemas import FEEDS, PRODUCTS
from pinlanding.feeds.config import SiteConfig
from pinlanding.feeds.site import build_site, render_page, run_site, safe_name


def context(**over) -> dict:
    base = {"site_title": "Shop", "root": "../", "generated": None, "slug": "s", "title": HOSTILE,
            "attributes": [{"key": "colour", "value": "<red>"}], "size": 1, "page": 1, "pages": 1, "prev": None,
            "next": None, "related": [{"title": "<i>rel</i>", "href": "r.html"}],
            "products": [{"product_id": "p", "score": 1.0, "title": 'x" onerror="alert(1)', "brand": "<b>B</b>",
                          "price": 1299.0, "price_text": "₹ 1,299", "image": "../images/p.jpg"}]}
    return base | over


def test_render_page_escapes_merchant_text():
    html = render_page(context())
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert 'alt="x&#34; onerror=&#34;alert(1)"' in html  # attribute injection neutralized
    assert "<b>B</b>" not in html and "<i>rel</i>" not in html and "&lt;red&gt;" in html
    assert '<html lang="en">' in html and 'alt="' in html and "₹ 1,299" in html


def test_safe_name_never_escapes_folder():
    for slug in ["../../etc/passwd", "a/b", "", "ÅÄÖ", "<script>", "CON"]:
        name = safe_name(slug)
        assert re.fullmatch(r"[a-z0-9-]+", name), name
    assert safe_name("red-dresses") == "red-dresses"
    assert safe_name("Red Dresses") != safe_name("red-dresses")  # no collisions between distinct slugs


def run_ctx(layout, **site) -> StageContext:
    return StageContext(PipelineConfig.model_validate({"site": site}), layout)


def test_site_pages_images_pagination_and_related(tmp_path):
    layout = published_run(tmp_path)
    counts = run_site(run_ctx(layout, products_per_page=5))
    site = layout.root / "site"
    assert counts["collections"] == 3 and counts["missing_images"] == 0
    assert sorted(p.name for p in (site / "c").iterdir()) == [
        "blue-shirts--2.html", "blue-shirts.html", "red-dresses--2.html", "red-dresses--3.html", "red-dresses.html",
        "women-shoes--2.html", "women-shoes.html"]
    page = (site / "c" / "red-dresses.html").read_text()
    assert 'rel="next" href="red-dresses--2.html"' in page
    assert 'href="blue-shirts.html"' in page  # related: they share products p010, p011 and a colour key
    for src in re.findall(r'src="([^"]+)"', page):
        assert (site / "c" / src).resolve().is_file(), src
    assert "&lt;script&gt;" in (site / "index.html").read_text()
    assert len(list((site / "images").iterdir())) == 26  # products of all feeds, each once


def test_incremental_regeneration_and_removal(tmp_path):
    layout = published_run(tmp_path)
    ctx = run_ctx(layout)
    first = run_site(ctx)
    site = layout.root / "site"
    before = {p.name: p.stat().st_mtime_ns for p in (site / "c").iterdir()}
    again = run_site(ctx)
    assert again["pages_written"] == 0 and again["pages_unchanged"] == first["pages_written"]
    assert {p.name: p.stat().st_mtime_ns for p in (site / "c").iterdir()} == before

    feeds = read_table(layout.feeds, FEEDS).to_pylist()
    ids = [f"p{i:03d}" for i in range(36)]
    feeds = [f for f in feeds if f["slug"] != "women-shoes"]  # topic removed
    feeds[1] = feed("blue-shirts", ids[10:18], attrs=[("colour", "blue"), ("category", "shirt")])  # feed changed
    write_table(pa.Table.from_pylist(feeds, schema=FEEDS), layout.feeds, FEEDS)
    third = run_site(ctx)
    # red-dresses shares nothing with women-shoes, so its page (and related list) is untouched
    assert not (site / "c" / "women-shoes.html").exists() and third["pages_removed"] == 1
    assert (site / "c" / "red-dresses.html").stat().st_mtime_ns == before["red-dresses.html"]
    assert (site / "c" / "blue-shirts.html").stat().st_mtime_ns != before["blue-shirts.html"]
    assert third["pages_written"] == 2  # blue-shirts + index
    assert third["images_removed"] == 10 and third["images"] == 18  # women-shoes' photos go; p016, p017 come
    assert len(list((site / "images").iterdir())) == 18
    assert "women-shoes" not in (site / "index.html").read_text()


def test_missing_image_gets_placeholder(tmp_path):
    layout = published_run(tmp_path)
    products = read_table(layout.products, PRODUCTS).to_pylist()
    products[0]["image_path"] = str(tmp_path / "nope.jpg")
    write_table(pa.Table.from_pylist(products, schema=PRODUCTS), layout.products, PRODUCTS)
    counts = run_site(run_ctx(layout))
    assert counts["missing_images"] == 1
    assert "../static/placeholder.svg" in (layout.root / "site" / "c" / "red-dresses.html").read_text()
    assert (layout.root / "site" / "static" / "placeholder.svg").is_file()


def test_empty_feeds_give_an_empty_index(tmp_path):
    layout = published_run(tmp_path, feeds=[])
    counts = build_site([], [], Path(layout.root / "site"), SiteConfig())
    assert counts["collections"] == 0 and "0 collections" in (layout.root / "site" / "index.html").read_text()
