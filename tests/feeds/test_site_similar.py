"""Landing pages: a "similar items" page per shown product, from the run's visual index, linked from its cards."""
from __future__ import annotations

import re

import pytest
from feedkit import with_visual_index
from sitekit import build, capped_feeds, page, site_run

from pinlanding.encoders.visual import VisualIndex
from pinlanding.feeds.site import similar_products


def test_cards_link_to_small_similar_items_pages(tmp_path):
    layout = with_visual_index(site_run(tmp_path, capped_feeds()))
    counts = build(layout, similar=3)
    site = layout.root / "site"
    shown = {p["product_id"] for f in capped_feeds() for p in f["products"]}
    pages = sorted(p.stem for p in (site / "s").iterdir())
    assert counts["similar_pages"] == len(pages) and set(pages) == shown
    collection = (site / "c" / "red-dress.html").read_text()
    assert 'href="../s/p009.html"' in collection and collection.count('class="similar"') == 4

    html = (site / "s" / "p000.html").read_text()  # p000's title and brand are hostile
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    doc = page(site / "s" / "p000.html")
    assert doc.h1.startswith("Similar to ") and doc.links["canonical"] == "p000.html"
    hrefs = [a["href"] for a in doc.anchors]
    assert "../c/red-dress.html" in hrefs and "../c/red.html" in hrefs  # the collections that show p000
    similar = [a["href"][:-5] for a in doc.anchors if a.get("class") == "similar"]  # each card's own page
    assert len(similar) == 3 and "p000" not in similar
    assert all(int(pid[1:]) % 6 != 0 for pid in similar)  # p000's photo twins (p006, p012, ...) left out
    assert set(similar) <= shown
    for src in re.findall(r'src="([^"]+)"', html):
        assert (site / "s" / src).resolve().is_file(), src
    assert doc.jsonld()[0]["mainEntity"]["numberOfItems"] == 3
    assert "/s/" not in (site / "sitemap.xml").read_text()  # reached through the cards, not listed

    assert build(layout, similar=3)["pages_written"] == 0  # unchanged: nothing rewritten
    counts = build(layout, similar=0)
    assert counts["similar_pages"] == 0 and not list((site / "s").iterdir())
    assert 'class="similar"' not in (site / "c" / "red-dress.html").read_text()


def test_similar_products_are_reused_while_the_index_shown_products_and_k_stay(tmp_path, monkeypatch):
    layout = with_visual_index(site_run(tmp_path, capped_feeds()))
    shown = {p["product_id"] for f in capped_feeds() for p in f["products"]}
    cache = layout.root / "site.similar.parquet"
    first = similar_products(layout, shown, 3, cache=cache)
    assert first and cache.exists()

    def searched_again(*args, **kwargs):
        raise AssertionError("the visual index was searched again")

    monkeypatch.setattr(VisualIndex, "load", searched_again)
    assert similar_products(layout, shown, 3, cache=cache) == first  # read back exactly
    with pytest.raises(AssertionError, match="searched again"):
        similar_products(layout, shown, 2, cache=cache)
    with pytest.raises(AssertionError, match="searched again"):
        similar_products(layout, shown - {"p000"}, 3, cache=cache)
