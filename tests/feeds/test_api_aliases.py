"""Old slugs answer 301 to the collection's current slug: a merged duplicate's slug (an alias) and a slug from a
recorded earlier version (the value was respelled, the topic id stayed)."""
from __future__ import annotations

import httpx

from feedkit import feed, published_run
from serving import serve_in_thread

from pinlanding.feeds.api import create_app
from pinlanding.feeds.config import ServeConfig
from pinlanding.vocab.topics import topic_id


def test_alias_slug_redirects_to_the_kept_feed(tmp_path):
    ids = [f"p{i:03d}" for i in range(36)]
    red = feed("red-dresses", ids[0:6], attrs=[("colour", "red"), ("category", "dress")])
    red["aliases"] = ["red-casual-dresses"]
    layout = published_run(tmp_path, [red, feed("blue-shirts", ids[10:16])])
    app = create_app(layout, ServeConfig(), encoder=None, load_model=False)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        r = client.get("/topics/red-casual-dresses")
        assert r.status_code == 301 and r.headers["location"] == "/topics/red-dresses"
        r = client.get("/topics/red-casual-dresses/feed", params={"limit": 3})
        assert r.status_code == 301 and r.headers["location"] == "/topics/red-dresses/feed?limit=3"
        followed = client.get("/topics/red-casual-dresses/feed", follow_redirects=True).json()
        assert followed["topic"]["slug"] == "red-dresses" and followed["items"][0]["product_id"] == "p000"
        assert client.get("/topics/red-dresses").json()["aliases"] == ["red-casual-dresses"]
        assert client.get("/topics/blue-casual-shirts").status_code == 404


def test_respelled_value_keeps_its_id_and_its_old_slug_redirects(tmp_path):
    ids = [f"p{i:03d}" for i in range(36)]
    old_attrs, new_attrs = [("category", "T-Shirts"), ("color", "Navy-Blue")], [("category", "tshirt"), ("colour", "navy blue")]
    assert topic_id(tuple(old_attrs)) == topic_id(tuple(new_attrs))  # the canonical attribute set is the same
    before = feed("navy-blue-t-shirts", ids[0:6], attrs=old_attrs)
    before["topic_id"] = topic_id(tuple(old_attrs))
    versions_dir = str(tmp_path / "versions")
    create_app(published_run(tmp_path / "a", [before]), ServeConfig(versions_dir=versions_dir), load_model=False)
    after = feed("navy-blue-tshirt", ids[0:6], attrs=new_attrs)
    after["topic_id"] = topic_id(tuple(new_attrs))
    app = create_app(published_run(tmp_path / "b", [after]), ServeConfig(versions_dir=versions_dir), load_model=False)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        r = client.get("/topics/navy-blue-t-shirts")
        assert r.status_code == 301 and r.headers["location"] == "/topics/navy-blue-tshirt"
        assert client.get("/topics/navy-blue-t-shirts", follow_redirects=True).json()["topic_id"] == after["topic_id"]
