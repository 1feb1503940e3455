"""The feed API answers a merged duplicate's slug (an alias) with the feed it was merged into."""
from __future__ import annotations

import httpx

from feedkit import feed, published_run
from pinlanding.feeds.api import create_app, serve_in_thread
from pinlanding.feeds.config import ServeConfig


def test_alias_slug_answers_with_the_kept_feed(tmp_path):
    ids = [f"p{i:03d}" for i in range(36)]
    red = feed("red-dresses", ids[0:6], attrs=[("colour", "red"), ("category", "dress")])
    red["aliases"] = ["red-casual-dresses"]
    layout = published_run(tmp_path, [red, feed("blue-shirts", ids[10:16])])
    app = create_app(layout, ServeConfig(), encoder=None, load_model=False)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/topics/red-casual-dresses").json()["slug"] == "red-dresses"
        assert client.get("/topics/red-casual-dresses/feed").json()["items"][0]["product_id"] == "p000"
        assert client.get("/topics/blue-casual-shirts").status_code == 404
