"""The feed API over real HTTP (uvicorn in a thread on loopback): listing, paging, search, errors, spec."""
from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from feedkit import published_run
from pinlanding.collections.layout import RunLayout
import threading

from pinlanding.feeds.api import (SPEC_PATH, create_app, is_loopback, openapi_spec, serve_api, serve_in_thread,
                                 wait_for_search)
from pinlanding.feeds.config import ServeConfig


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A tiny deterministic stand-in encoder: normalized hashed word counts."""
    out = np.zeros((len(texts), 256), np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, sum(map(ord, word)) % 256] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    layout = published_run(tmp_path_factory.mktemp("api"))
    app = create_app(layout, ServeConfig(max_page_size=5, default_page_size=2), encoder=bag_of_words)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert wait_for_search(base, timeout=30) == "ready"
        yield client


def test_health_and_listing(api):
    assert api.get("/health").json() == {"status": "ok", "collections": 3, "products": 36, "search": "ready"}
    page = api.get("/topics", params={"limit": 2, "offset": 1}).json()
    assert (page["total"], page["offset"], page["limit"]) == (3, 1, 2)
    assert [t["slug"] for t in page["items"]] == ["blue-shirts", "women-shoes"]
    hits = api.get("/topics", params={"q": "SHIRT"}).json()
    assert [t["slug"] for t in hits["items"]] == ["blue-shirts"]
    assert api.get("/topics", params={"q": "zzz"}).json()["total"] == 0


def test_feed_paging_keeps_rank_order(api):
    first = api.get("/topics/red-dresses/feed", params={"limit": 5}).json()
    second = api.get("/topics/id-red-dresses/feed", params={"limit": 5, "offset": 5}).json()  # by topic_id too
    assert first["total"] == 12 and first["topic"]["title"].startswith("<script>")  # JSON carries raw text
    ranks = [i["rank"] for i in first["items"] + second["items"]]
    assert ranks == list(range(1, 11))
    scores = [i["score"] for i in first["items"] + second["items"]]
    assert scores == sorted(scores, reverse=True)
    assert first["items"][1] | {} == {"rank": 2, "product_id": "p001", "score": 0.99, "title": "Women Blue Dress 1",
                                      "brand": "Acme", "price": 101.0, "currency": "INR"}
    assert api.get("/topics/red-dresses/feed", params={"offset": 100}).json()["items"] == []


def test_search_maps_text_to_nearest_topics(api):
    body = api.get("/search", params={"q": "  women shoes  ", "k": 2}).json()
    assert body["query"] == "women shoes"
    assert body["items"][0]["topic"]["slug"] == "women-shoes"
    assert body["items"][0]["similarity"] >= body["items"][1]["similarity"]


@pytest.mark.parametrize("path,params,status,error", [
    ("/topics/nope", {}, 404, "not_found"),
    ("/topics/nope/feed", {}, 404, "not_found"),
    ("/topics", {"limit": 6}, 422, "invalid_request"),  # above max_page_size
    ("/topics", {"limit": 0}, 422, "invalid_request"),
    ("/topics", {"offset": -1}, 422, "invalid_request"),
    ("/topics", {"limit": "ten"}, 422, "invalid_request"),
    ("/topics/red-dresses/feed", {"limit": 1000}, 422, "invalid_request"),
    ("/search", {}, 422, "invalid_request"),
    ("/search", {"q": "   "}, 422, "invalid_request"),
    ("/search", {"q": "x" * 201}, 422, "invalid_request"),
    ("/search", {"q": "dress", "k": 0}, 422, "invalid_request"),
    ("/nothing", {}, 404, "not_found"),
])
def test_clear_4xx_errors(api, path, params, status, error):
    r = api.get(path, params=params)
    assert r.status_code == status and r.json()["error"] == error and r.json()["detail"]


def test_read_only(api):
    assert api.post("/topics").status_code == 405
    assert api.delete("/topics/red-dresses").status_code == 405


def test_openapi_spec_is_served_and_committed(api):
    served = api.get("/openapi.json").json()
    assert set(served["paths"]) == {"/health", "/topics", "/topics/{slug}", "/topics/{slug}/feed", "/search"}
    assert json.loads(SPEC_PATH.read_text()) == openapi_spec(), "run `python -c 'from pinlanding.feeds.api import export_openapi; export_openapi()'`"


def test_search_without_encoder_is_503(tmp_path):
    app = create_app(published_run(tmp_path), ServeConfig(), load_model=False)
    with serve_in_thread(app) as base:
        r = httpx.get(base + "/search", params={"q": "dress"})
    assert r.status_code == 503 and r.json()["error"] == "unavailable"


def test_search_is_503_while_warming_then_answers(tmp_path):
    release = threading.Event()

    def slow_encoder(texts: list[str]) -> np.ndarray:
        release.wait(timeout=30)
        return bag_of_words(texts)

    app = create_app(published_run(tmp_path), ServeConfig(), encoder=slow_encoder)
    with serve_in_thread(app) as base:
        assert httpx.get(base + "/health").json()["search"] == "warming"
        r = httpx.get(base + "/search", params={"q": "dress"})
        assert r.status_code == 503 and r.headers["retry-after"] == "5" and "warming up" in r.json()["detail"]
        assert httpx.get(base + "/topics/red-dresses").status_code == 200  # other routes answer meanwhile
        release.set()
        assert wait_for_search(base, timeout=30) == "ready"
        assert httpx.get(base + "/search", params={"q": "women shoes"}).json()["items"][0]["topic"]["slug"] == "women-shoes"


def test_serve_requires_feeds(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `pinlanding run`"):
        serve_api(RunLayout(tmp_path), ServeConfig())
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")


@pytest.mark.slow
def test_search_with_minilm(tmp_path):
    app = create_app(published_run(tmp_path), ServeConfig())  # the packaged, verified MiniLM
    with serve_in_thread(app) as base:
        assert wait_for_search(base, timeout=300) == "ready"
        body = httpx.get(base + "/search", params={"q": "sneakers for ladies", "k": 3}, timeout=120).json()
    assert body["items"][0]["topic"]["slug"] == "women-shoes"
