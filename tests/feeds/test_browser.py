"""The generated site in headless Chromium: the home page, a hub, a collection and its page 2 render, images load,
links, breadcrumbs and the search work, nothing injected runs, and a 390 px wide phone can use every page."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sitekit import build, site_run

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (`apt-get install -y chromium` or `make browser`)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    layout = site_run(tmp_path_factory.mktemp("browser"))
    build(layout, products_per_page=5)
    return layout.root / "site"


def images_load(page) -> None:
    images = page.locator("main img")
    assert images.count() > 0
    for i in range(images.count()):
        img = images.nth(i)
        img.scroll_into_view_if_needed()
        img.evaluate("img => img.complete || new Promise(r => img.addEventListener('load', r, {once: true}))")
        assert img.evaluate("img => img.complete && img.naturalWidth > 0"), img.get_attribute("src")
        assert img.get_attribute("width") and img.get_attribute("height")


def test_home_hub_collection_and_page_2(site, browser):
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto((site / "index.html").as_uri())
    assert page.locator("h1").inner_text() == "Collections"
    assert [" ".join(t.split()) for t in page.locator("section.group h2").all_inner_texts()] == [
        "Dress 1 collection", "Shoes 1 collection", "Shirt 1 collection"]  # biggest first
    assert page.locator(".tile").count() == 3
    images_load(page)

    page.fill("#q", "shoe")  # the search: the A-Z list, filtered by the query
    page.locator("form.search button").click()
    page.wait_for_load_state()
    assert page.url.endswith("/collections.html?q=shoe")
    assert page.locator("#collections li:visible").count() == 1
    assert page.locator("#count").inner_text() == "1 collection"
    page.fill("#q", "")
    assert page.locator("#collections li:visible").count() == 3

    page.goto((site / "index.html").as_uri())
    page.locator("section.group h2 a", has_text="Dress").click()  # home -> hub
    page.wait_for_load_state()
    assert page.url.endswith("/h/dress.html") and page.locator("h1").inner_text() == "Dress"
    assert page.locator("nav.crumbs li").all_inner_texts() == ["Home", "Dress"]
    images_load(page)
    page.locator(".tile a").first.click()  # hub -> collection: two clicks from home
    page.wait_for_load_state()
    assert page.url.endswith("/c/red-dresses.html")
    assert page.locator("h1").inner_text().startswith('<script>alert("x")</script>')  # shown as text, not run
    crumbs = page.locator("nav.crumbs li").all_inner_texts()
    assert crumbs[:2] == ["Home", "Dress"] and crumbs[2].startswith("<script>")
    assert page.locator(".grid .card").count() == 5
    images_load(page)
    assert page.locator(".grid img").first.get_attribute("srcset")  # p000 has a larger photo
    links = page.locator(".grid a.product")
    assert links.first.get_attribute("href") == "https://merchant.example/p/p000?a=1&b=2"
    assert page.locator(".meta").inner_text().startswith("12 products")

    page.locator("a[rel=next]").click()
    page.wait_for_load_state()
    assert page.url.endswith("/c/red-dresses--2.html")
    assert page.locator("h1").inner_text().endswith("(page 2 of 3)")
    assert page.title().endswith("page 2 of 3 · Collections")
    assert page.locator(".pager [aria-current=page]").inner_text() == "2"
    images_load(page)
    page.locator(".related a", has_text="Blue Shirts").click()
    page.wait_for_load_state()
    assert page.url.endswith("/c/blue-shirts.html") and page.locator("h1").inner_text() == "Blue Shirts"
    page.locator("nav.crumbs li").nth(1).locator("a").click()
    assert page.url.endswith("/h/shirt.html")
    page.locator("nav[aria-label=Site] a.home").click()
    assert page.url.endswith("/index.html")
    assert dialogs == []  # no injected script ever ran

    for html in site.rglob("*.html"):  # every link on every page resolves to a file
        text = html.read_text()
        for href in re.findall(r'(?:href|src)="([^"#]+)"', text):
            if "://" not in href:
                assert (html.parent / href.split("?")[0]).resolve().exists(), (html.name, href)


@pytest.mark.parametrize("path", ["index.html", "h/dress.html", "c/red-dresses.html", "c/red-dresses--2.html",
                                  "collections.html"])
def test_usable_at_390_px(site, browser, path):
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                            has_touch=True)
    page.goto((site / path).as_uri())
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing scrolls sideways
    assert page.locator("h1").bounding_box()["width"] <= 390 - 2 * 16
    for selector in ("main a", "main input", "main button"):
        for box in (e.bounding_box() for e in page.locator(selector).all() if e.is_visible()):
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390 + 0.5, (selector, box)
    cards = page.locator(".grid .card")
    if cards.count() >= 2:  # two products a row
        first, second = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
        assert first["y"] == second["y"] and first["width"] >= 150
    page.close()
