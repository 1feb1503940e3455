"""The generated site in headless Chromium: pages render, images load, links and the title filter work."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from feedkit import published_run
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.pipeline import StageContext
from pinlanding.feeds.site import run_site

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


def test_site_in_browser(tmp_path, browser):
    layout = published_run(tmp_path)
    run_site(StageContext(PipelineConfig.model_validate({"site": {"products_per_page": 5}}), layout))
    site = layout.root / "site"
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto((site / "index.html").as_uri())
    assert page.locator("h1").inner_text() == "Collections"
    assert page.locator("#collections li").count() == 3

    page.fill("#q", "shoe")  # the inline title filter
    assert page.locator("#collections li:visible").count() == 1
    assert page.locator("#count").inner_text() == "1 collections"
    page.fill("#q", "")

    page.locator("#collections a", has_text="<script>").click()  # hostile title is shown as text, not run
    page.wait_for_load_state()
    assert page.url.endswith("/c/red-dresses.html")
    assert page.locator("h1").inner_text().startswith('<script>alert("x")</script>')
    images = page.locator(".grid img")
    assert images.count() == 5
    for i in range(images.count()):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0"), images.nth(i).get_attribute("src")
    assert page.locator(".grid img").first.get_attribute("alt")

    page.locator("a[rel=next]").click()
    page.wait_for_load_state()
    assert page.url.endswith("/c/red-dresses--2.html")
    page.locator(".related a", has_text="Blue Shirts").click()
    page.wait_for_load_state()
    assert page.url.endswith("/c/blue-shirts.html") and page.locator("h1").inner_text() == "Blue Shirts"
    page.locator("nav[aria-label=Site] a").click()
    assert page.url.endswith("/index.html")
    assert dialogs == []  # no injected script ever ran

    for html in (site / "c").glob("*.html"):  # every link on every page resolves to a file
        text = html.read_text()
        for href in re.findall(r'(?:href|src)="([^"#]+)"', text):
            assert (html.parent / href).resolve().exists(), (html.name, href)
