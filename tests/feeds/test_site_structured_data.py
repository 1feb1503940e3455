"""The pages' structured data as a crawler's library reads it (extruct, from PyPI): JSON-LD types and fields,
and the Open Graph tags."""
from __future__ import annotations

import pytest

from sitekit import BASE, BREAKOUT, build, capped_feeds, site_run

extruct = pytest.importorskip("extruct", reason="extruct not installed (pip install -e '.[test]')")


def extract(path, url):
    return extruct.extract(path.read_text(encoding="utf-8"), base_url=url, syntaxes=["json-ld", "opengraph"],
                           uniform=True)


def test_collection_page_structured_data(tmp_path):
    layout = site_run(tmp_path, capped_feeds())
    build(layout, base_url=BASE, products_per_page=3)
    data = extract(layout.root / "site" / "c" / "red--2.html", BASE + "c/red--2.html")
    by_type = {d["@type"]: d for d in data["json-ld"]}
    assert set(by_type) == {"CollectionPage", "BreadcrumbList"}
    page = by_type["CollectionPage"]
    assert page["url"] == BASE + "c/red--2.html" and page["isPartOf"]["@type"] == "WebSite"
    assert "page 2 of 2" in page["name"] and page["description"]
    listing = page["mainEntity"]
    assert listing["@type"] == "ItemList" and listing["numberOfItems"] == 2
    assert [e["@type"] for e in listing["itemListElement"]] == ["ListItem", "ListItem"]
    assert [e["position"] for e in listing["itemListElement"]] == [4, 5]  # ranks in the whole feed
    for entry in listing["itemListElement"]:
        product = entry["item"]
        assert product["@type"] == "Product" and product["name"]
        assert product["image"].startswith(BASE + "images/")
        assert product["brand"]["@type"] == "Brand" and product["brand"]["name"] == "Acme"
        offer = product["offers"]
        assert offer["@type"] == "Offer" and float(offer["price"]) > 0 and offer["priceCurrency"] == "INR"
        assert offer["url"] == product["url"] and product["url"].startswith("https://merchant.example/p/")
    crumbs = by_type["BreadcrumbList"]["itemListElement"]
    assert [(c["position"], c["name"]) for c in crumbs] == [(1, "Home"), (2, "Other collections"), (3, "Red things")]
    assert crumbs[-1]["item"] == BASE + "c/red.html"  # the collection itself, not its page 2

    og = data["opengraph"][0]
    assert og["@type"] == "website" and og["og:url"] == BASE + "c/red--2.html"
    assert og["og:image"].startswith(BASE + "images/p009-") and og["og:title"] == "Red things"
    assert og["og:description"] == page["description"]


def test_hostile_title_survives_as_data(tmp_path):
    layout = site_run(tmp_path, capped_feeds())
    build(layout, base_url=BASE)
    data = extract(layout.root / "site" / "c" / "red-dress.html", BASE + "c/red-dress.html")
    by_type = {d["@type"]: d for d in data["json-ld"]}
    assert BREAKOUT in by_type["CollectionPage"]["name"]
    assert by_type["BreadcrumbList"]["itemListElement"][-1]["name"] == BREAKOUT
    assert data["opengraph"][0]["og:title"] == BREAKOUT


def test_home_and_hub_structured_data(tmp_path):
    layout = site_run(tmp_path, capped_feeds())
    build(layout, base_url=BASE)
    home = extract(layout.root / "site" / "index.html", BASE + "index.html")["json-ld"]
    assert [d["@type"] for d in home] == ["WebSite"] and home[0]["url"] == BASE + "index.html"
    hub = {d["@type"]: d for d in extract(layout.root / "site" / "h" / "dress.html", BASE + "h/dress.html")["json-ld"]}
    members = hub["CollectionPage"]["mainEntity"]["itemListElement"]
    assert [m["url"] for m in members] == [BASE + "c/dresses.html", BASE + "c/red-dress.html"]  # biggest first
    assert [c["name"] for c in hub["BreadcrumbList"]["itemListElement"]] == ["Home", "Dress"]
