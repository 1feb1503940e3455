"""Landing pages as search engines read them: unique titles and descriptions, canonical, prev/next, Open Graph,
JSON-LD that no title breaks out of, sitemap.xml (an index past its limit) and robots.txt, hubs and breadcrumbs,
honest counts, product links and srcset photos."""
from __future__ import annotations

import json
import re
from collections import deque
from pathlib import Path
from urllib.parse import urldefrag

from sitekit import BASE, BREAKOUT, build, capped_feeds, page, site_run
from pinlanding.collections.catalog import myntra_fields
from pinlanding.collections.ingest import clean_url
from pinlanding.feeds.site import json_ld


def html_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if 'http-equiv="refresh"' not in p.read_text())


def test_every_page_has_a_unique_title_and_description(tmp_path):
    layout = site_run(tmp_path)
    build(layout, products_per_page=4)
    pages = [page(p) for p in html_pages(layout.root / "site")]
    assert len(pages) == 2 + 3 + 2 + 3 + 3  # home, A-Z; red-dresses 3 pages, blue-shirts 2, women-shoes 3; 3 hubs
    titles = [p.title for p in pages]
    descriptions = [p.meta["description"] for p in pages]
    assert len(set(titles)) == len(titles) and len(set(descriptions)) == len(descriptions)
    assert all(d.strip() for d in descriptions) and all(len(d) < 400 for d in descriptions)
    second = page(layout.root / "site" / "c" / "red-dresses--2.html")
    first = page(layout.root / "site" / "c" / "red-dresses.html")
    assert "page 2 of 3" in second.title and second.h1 != first.h1 and "(page 2 of 3)" in second.h1
    assert "products 5 to 8" in second.meta["description"] and "colour red" in second.meta["description"]


def test_canonical_prev_next_and_open_graph(tmp_path):
    layout = site_run(tmp_path)
    build(layout, products_per_page=4, base_url=BASE)
    site = layout.root / "site"
    second = page(site / "c" / "red-dresses--2.html")
    assert second.links["canonical"] == BASE + "c/red-dresses--2.html"  # page 2 is its own canonical page
    assert second.links["prev"] == BASE + "c/red-dresses.html"
    assert second.links["next"] == BASE + "c/red-dresses--3.html"
    assert any(a.get("rel") == "prev" and a["href"] == "red-dresses.html" for a in second.anchors)
    first = page(site / "c" / "red-dresses.html")
    assert "prev" not in first.links and first.links["next"] == BASE + "c/red-dresses--2.html"
    assert first.meta["og:url"] == first.links["canonical"] == BASE + "c/red-dresses.html"
    assert first.meta["og:title"] and first.meta["og:description"] == first.meta["description"]
    lead = first.meta["og:image"]  # the lead product's largest photo, absolute
    assert lead.startswith(BASE + "images/p000-") and "-24w-" in lead
    assert (site / "images" / lead.rsplit("/", 1)[1]).is_file()
    assert page(site / "index.html").links["canonical"] == BASE + "index.html"
    assert page(site / "h" / "dress.html").links["canonical"] == BASE + "h/dress.html"


def test_urls_stay_relative_without_base_url(tmp_path):
    layout = site_run(tmp_path)
    build(layout, products_per_page=4)
    site = layout.root / "site"
    first = page(site / "c" / "red-dresses.html")
    assert first.links["canonical"] == "red-dresses.html" and "og:url" not in first.meta
    assert first.meta["og:image"].startswith("../images/p000-")
    assert "Sitemap:" not in (site / "robots.txt").read_text()
    assert "<loc>c/red-dresses.html</loc>" in (site / "sitemap.xml").read_text()


def test_json_ld_cannot_be_broken_out_of(tmp_path):
    text = json_ld({"name": BREAKOUT, "x": "a\u2028b&c"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"name": BREAKOUT, "x": "a\u2028b&c"}
    layout = site_run(tmp_path, capped_feeds())
    build(layout)
    html = (layout.root / "site" / "c" / "red-dress.html").read_text()
    parsed = page(layout.root / "site" / "c" / "red-dress.html")
    assert [a.get("type") for a, _ in parsed.scripts] == ["application/ld+json", "application/ld+json"]
    assert '</script><script>alert("ld")' not in html and "<!-- Dress" not in html
    collection, crumbs = parsed.jsonld()
    assert collection["@type"] == "CollectionPage" and BREAKOUT in collection["name"]
    assert crumbs["itemListElement"][-1]["name"] == BREAKOUT
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the title opened and closed none


def test_structured_data_products(tmp_path):
    layout = site_run(tmp_path, capped_feeds())
    build(layout, base_url=BASE)
    collection, crumbs = page(layout.root / "site" / "c" / "red.html").jsonld()
    items = collection["mainEntity"]["itemListElement"]
    assert collection["mainEntity"]["@type"] == "ItemList" and [i["position"] for i in items] == [1, 2, 3, 4, 5]
    product = items[0]["item"]
    assert product["@type"] == "Product" and product["brand"] == {"@type": "Brand", "name": "<b>Brand</b>"}
    assert product["offers"] == {"@type": "Offer", "price": "100.00", "priceCurrency": "INR",
                                 "url": "https://merchant.example/p/p000?a=1&b=2"}
    assert product["image"].startswith(BASE + "images/p000-")
    assert [c["name"] for c in crumbs["itemListElement"]] == ["Home", "Other collections", "Red things"]
    assert crumbs["itemListElement"][0]["item"] == BASE + "index.html"


def test_sitemap_robots_and_sitemap_index(tmp_path):
    layout = site_run(tmp_path)
    counts = build(layout, products_per_page=4, base_url=BASE)
    site = layout.root / "site"
    assert (site / "robots.txt").read_text() == f"User-agent: *\nAllow: /\n\nSitemap: {BASE}sitemap.xml\n"
    sitemap = (site / "sitemap.xml").read_text()
    locs = re.findall(r"<loc>([^<]+)</loc>", sitemap)
    assert sorted(locs) == sorted(BASE + p.relative_to(site).as_posix() for p in html_pages(site))
    assert counts["sitemap_urls"] == len(locs) == 13 and sitemap.count("<lastmod>") == 13
    lastmods = re.findall(r"<lastmod>([^<]+)</lastmod>", sitemap)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", m) for m in lastmods)

    build(layout, products_per_page=4, base_url=BASE, sitemap_max_urls=5)  # past the limit: an index
    index = (site / "sitemap.xml").read_text()
    assert "<sitemapindex" in index and re.findall(r"<loc>([^<]+)</loc>", index) == [
        f"{BASE}sitemap-{n}.xml" for n in (1, 2, 3)]
    parts = [re.findall(r"<loc>([^<]+)</loc>", (site / f"sitemap-{n}.xml").read_text()) for n in (1, 2, 3)]
    assert [len(p) for p in parts] == [5, 5, 3] and sorted(sum(parts, [])) == sorted(locs)
    build(layout, products_per_page=4, base_url=BASE)  # back under it: the parts go
    assert not list(site.glob("sitemap-*.xml")) and "<urlset" in (site / "sitemap.xml").read_text()


def test_home_hubs_breadcrumbs_and_two_clicks(tmp_path):
    layout = site_run(tmp_path, capped_feeds())
    build(layout)
    site = layout.root / "site"
    home = page(site / "index.html")
    hub_links = [a["href"] for a in home.anchors if a["href"].startswith("h/")]
    assert hub_links[:3] == ["h/dress.html", "h/shirt.html", "h/more--collections.html"]  # biggest first, other last
    dress = page(site / "h" / "dress.html")
    assert "Dress" in dress.h1 and [a["href"] for a in dress.anchors if a.get("aria-current")] == ["dress.html"]
    assert "By colour" in "".join(dress.text)  # its collections by facet
    crumbs = [(a["href"], a.get("aria-current")) for a in page(site / "c" / "red-dress.html").anchors][3:6]
    assert crumbs == [("../index.html", None), ("../h/dress.html", None), ("red-dress.html", "page")]
    # every collection page is reachable from the home page in at most two clicks
    depth = {"index.html": 0}
    queue = deque(["index.html"])
    while queue:
        here = queue.popleft()
        if depth[here] == 2:
            continue
        for a in page(site / here).anchors:
            target = urldefrag(a["href"])[0]
            if not target or "://" in target:
                continue
            path = (Path(here).parent / target).as_posix()
            path = re.sub(r"[^/]+/\.\./", "", path)
            if path not in depth and path.endswith(".html"):
                depth[path] = depth[here] + 1
                queue.append(path)
    collections = {p.relative_to(site).as_posix() for p in (site / "c").glob("*.html") if "--" not in p.name}
    assert collections <= set(depth), collections - set(depth)


def test_honest_counts(tmp_path):
    layout = site_run(tmp_path, capped_feeds())
    counts = build(layout)
    site = layout.root / "site"
    assert counts["matched_known"] == 4
    red = " ".join(page(site / "c" / "red.html").text)
    assert "12 products match · the best 5 are shown" in red  # 12 red products, the feed keeps 5
    assert "4 products match, all shown" in " ".join(page(site / "c" / "red-dress.html").text)
    assert "12 products" in " ".join(page(site / "index.html").text)  # tiles say how many match, too
    assert "Red things: 12 products" in page(site / "c" / "red.html").title
    (layout.assignments).rename(layout.root / "assignments-gone")  # no assignments: only what is shown is said
    build(layout)
    assert "5 products" in " ".join(page(site / "c" / "red.html").text)
    assert "match" not in " ".join(page(site / "c" / "red.html").text)


def test_product_links_and_photos(tmp_path):
    layout = site_run(tmp_path, capped_feeds())
    counts = build(layout)
    site = layout.root / "site"
    red = page(site / "c" / "red.html")
    products = [a["href"] for a in red.anchors if a.get("class") == "product"]
    # p000, p003, p006 (no url), p009, p012: p006 stays a plain card
    assert products == [f"https://merchant.example/p/p{i:03d}?a=1&b=2" for i in (0, 3, 9, 12)]
    other = site_run(tmp_path / "other")  # red-dresses shows p000-p011: p005's url is javascript:, p006 has none
    build(other)
    shown = page(other.root / "site" / "c" / "red-dresses.html")
    linked = [a["href"].split("/")[-1].split("?")[0] for a in shown.anchors if a.get("class") == "product"]
    assert linked == [f"p{i:03d}" for i in range(12) if i not in (5, 6)]
    assert not any("javascript" in a["href"] for a in shown.anchors)
    assert counts["larger_photos"] > 0
    for img in red.images:
        assert img["width"] and img["height"] and img["alt"] is not None
    even = [img for img in red.images if "p000-" in img["src"]][0]
    assert even["src"].endswith(".jpg") and "-24w-" in even["src"]  # the largest as src
    assert (even["width"], even["height"]) == ("24", "32")
    sizes = [s.strip().rsplit(" ", 1) for s in even["srcset"].split(",")]
    assert [w for _, w in sizes] == ["6w", "24w"] and all((site / "c" / src).resolve().is_file() for src, _ in sizes)
    odd = [img for img in red.images if "p003-" in img["src"]][0]  # no larger photo: no srcset
    assert "srcset" not in odd and (odd["width"], odd["height"]) == ("6", "8")


def test_catalogue_url_field():
    assert myntra_fields({"id": 7, "landingPageUrl": "Tshirts/Nike/Nike-Men-Tshirt/7/buy"}, Path("/x"))["url"] == (
        "https://www.myntra.com/Tshirts/Nike/Nike-Men-Tshirt/7/buy")
    assert myntra_fields({"id": 7}, Path("/x"))["url"] is None
    assert clean_url(" https://a.example/p?x=1 ") == "https://a.example/p?x=1"
    for bad in ["javascript:alert(1)", "/relative", "ftp://a/b", "https://a b", "", None, float("nan"), "http://"]:
        assert clean_url(bad) is None, bad
