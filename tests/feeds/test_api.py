"""The feed API over real HTTP (uvicorn in a thread on loopback): listing, paging, search, batch, errors, spec."""
from __future__ import annotations

import json
import threading

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from feedkit import feed, published_run
from serving import serve_in_thread, wait_for_search

from pinlanding.collections.layout import RunLayout
from pinlanding.collections.net import is_loopback
from pinlanding.feeds.api import SPEC_PATH, create_app, openapi_spec, serve_api
from pinlanding.feeds.config import ServeConfig


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A tiny deterministic stand-in encoder: normalized hashed word counts."""
    out = np.zeros((len(texts), 256), np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, sum(map(ord, word)) % 256] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def search_feeds(ids: list[str]) -> list[dict]:
    return [
        feed("red-dresses", ids[0:12], title='<script>alert("x")</script> Red Dresses',
             attrs=[("colour", "red"), ("category", "dress")], judge=0.9),
        feed("dresses", ids[0:20], attrs=[("category", "dress")]),
        feed("blue-shirts", ids[10:16], attrs=[("color", "blue"), ("category", "shirts")]),
        feed("women-shoes", ids[20:30], attrs=[("gender", "women"), ("category", "shoes")], judge=0.7),
    ]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    layout = published_run(root, search_feeds([f"p{i:03d}" for i in range(36)]))
    app = create_app(layout, ServeConfig(max_page_size=5, default_page_size=2, max_batch=50),
                     encoder=bag_of_words)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert wait_for_search(base, timeout=30) == "ready"
        yield client


def test_health_and_listing(api):
    health = api.get("/health").json()
    assert {k: health[k] for k in ("status", "collections", "products", "search")} == {
        "status": "ok", "collections": 4, "products": 36, "search": "ready"}
    assert len(health["run_id"]) == 16 and health["search_ready_seconds"] is not None
    page = api.get("/topics", params={"limit": 2, "offset": 1}).json()
    assert (page["total"], page["offset"], page["limit"]) == (4, 1, 2)
    assert [t["slug"] for t in page["items"]] == ["dresses", "blue-shirts"]
    hits = api.get("/topics", params={"q": "SHIRT"}).json()
    assert [t["slug"] for t in hits["items"]] == ["blue-shirts"]
    assert api.get("/topics", params={"q": "zzz"}).json()["total"] == 0


def test_feed_paging_keeps_rank_order_and_carries_urls(api):
    first = api.get("/topics/red-dresses/feed", params={"limit": 5}).json()
    second = api.get("/topics/id-red-dresses/feed", params={"limit": 5, "offset": 5}).json()  # by topic_id too
    assert first["total"] == 12 and first["topic"]["title"].startswith("<script>")  # JSON carries raw text
    ranks = [i["rank"] for i in first["items"] + second["items"]]
    assert ranks == list(range(1, 11))
    scores = [i["score"] for i in first["items"] + second["items"]]
    assert scores == sorted(scores, reverse=True)
    assert first["items"][1] == {"rank": 2, "product_id": "p001", "score": 0.99, "title": "Women Blue Dress 1",
                                 "brand": "Acme", "price": 101.0, "currency": "INR", "image_url": "/images/p001",
                                 "product_url": None}
    image = api.get(first["items"][1]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"
    assert api.get("/images/p999").status_code == 404
    assert api.get("/topics/red-dresses/feed", params={"offset": 100}).json()["items"] == []


def test_search_exact_partial_and_none(api):
    exact = api.get("/search", params={"q": "  Red   dress "}).json()
    assert exact["query"] == "Red dress" and exact["match"] == "exact" and exact["collection"]["slug"] == "red-dresses"
    assert exact["unmet"] == [] and 0.0 <= exact["confidence"] <= 1.0
    assert {(m["key"], m["value"], m["collection_value"], m["via"]) for m in exact["matched"]} == {
        ("colour", "red", "red", "exact"), ("category", "dress", "dress", "exact")}
    partial = api.get("/search", params={"q": "blue shirt for women"}).json()
    assert partial["match"] == "partial" and partial["collection"]["slug"] == "blue-shirts"
    assert partial["unmet"] == [{"key": "gender", "value": "women"}]
    assert exact["coverage"] == 1.0 and partial["coverage"] == round(4 / 4.6, 4)  # product 3 + colour 1 of 3+1+0.6
    navy = api.get("/search", params={"q": "navy blue shirt"}).json()  # a broader colour serves, and says so
    assert navy["match"] == "partial" and navy["collection"]["slug"] == "blue-shirts"
    assert {"key": "colour", "value": "navy blue", "collection_value": "blue", "via": "broader"} in navy["matched"]
    green = api.get("/search", params={"q": "green dress", "k": 3}).json()  # not a red dress: the dress page
    assert green["collection"]["slug"] == "dresses" and green["unmet"] == [{"key": "colour", "value": "green"}]
    assert green["alternatives"] == []  # red-dresses asks for a colour the query did not
    nonsense = api.get("/search", params={"q": "qwzx blorp"}).json()
    assert nonsense["match"] == "none" and nonsense["collection"] is None and nonsense["confidence"] == 0.0
    assert nonsense["unexplained"] == ["qwzx", "blorp"]
    other_item = api.get("/search", params={"q": "red dress with blue shirt"}).json()  # the first item is the product
    assert other_item["collection"]["slug"] == "red-dresses"
    coat = api.get("/search", params={"q": "black coat"}).json()  # no collection of that product type
    assert coat["match"] == "none" and coat["unmet"] == [{"key": "colour", "value": "black"},
                                                         {"key": "category", "value": "coat"}]


def test_long_queries_up_to_1000_characters(api):
    long = "red dress " + "very " * 198  # 1000 characters
    assert len(long.rstrip()) <= 1000
    r = api.get("/search", params={"q": long.rstrip()})
    assert r.status_code == 200 and r.json()["collection"]["slug"] == "red-dresses"
    assert api.get("/search", params={"q": "x" * 1001}).status_code == 422


def test_batch_maps_many_queries_in_order(api):
    body = api.post("/search/batch", json={"queries": ["red dress", "qwzx", "blue shirts for women"]}).json()
    assert body["count"] == 3 and len(body["run_id"]) == 16
    assert [(r["match"], r["slug"]) for r in body["results"]] == [("exact", "red-dresses"), ("none", None),
                                                                  ("partial", "blue-shirts")]
    assert body["results"][2]["unmet"] == [{"key": "gender", "value": "women"}]
    assert [r["coverage"] for r in body["results"]] == [1.0, 0.0, round(4 / 4.6, 4)]
    detail = api.post("/search/batch", json={"queries": ["red dress"], "detail": True}).json()["results"][0]
    assert detail["collection"]["slug"] == "red-dresses" and "alternatives" in detail
    same = api.get("/search", params={"q": "red dress"}).json()
    assert detail == same  # the batch and the single route give the same answer


@pytest.mark.parametrize("method,path,kwargs,status,error", [
    ("get", "/topics/nope", {}, 404, "not_found"),
    ("get", "/topics/nope/feed", {}, 404, "not_found"),
    ("get", "/topics", {"params": {"limit": 6}}, 422, "invalid_request"),  # above max_page_size
    ("get", "/topics", {"params": {"limit": 0}}, 422, "invalid_request"),
    ("get", "/topics", {"params": {"offset": -1}}, 422, "invalid_request"),
    ("get", "/topics", {"params": {"limit": "ten"}}, 422, "invalid_request"),
    ("get", "/topics", {"params": {"min_size": -1}}, 422, "invalid_request"),
    ("get", "/topics", {"params": {"flavour": "sweet"}}, 422, "invalid_request"),  # not an attribute key
    ("get", "/topics", {"params": {"colour": ""}}, 422, "invalid_request"),
    ("get", "/topics/red-dresses/feed", {"params": {"limit": 1000}}, 422, "invalid_request"),
    ("get", "/search", {}, 422, "invalid_request"),
    ("get", "/search", {"params": {"q": "   "}}, 422, "invalid_request"),
    ("get", "/search", {"params": {"q": "x" * 1001}}, 422, "invalid_request"),
    ("get", "/search", {"params": {"q": "dress", "k": 0}}, 422, "invalid_request"),
    ("post", "/search/batch", {"json": {}}, 422, "invalid_request"),
    ("post", "/search/batch", {"json": {"queries": []}}, 422, "invalid_request"),
    ("post", "/search/batch", {"json": {"queries": "red dress"}}, 422, "invalid_request"),
    ("post", "/search/batch", {"json": {"queries": ["ok", " "]}}, 422, "invalid_request"),
    ("post", "/search/batch", {"json": {"queries": ["x" * 1001]}}, 422, "invalid_request"),
    ("post", "/search/batch", {"json": {"queries": ["dress"] * 51}}, 422, "invalid_request"),  # above max_batch
    ("post", "/search/batch", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422,
     "invalid_request"),
    ("get", "/changes", {}, 422, "invalid_request"),
    ("get", "/changes", {"params": {"since": "not-hex!"}}, 422, "invalid_request"),
    ("get", "/changes", {"params": {"since": "0123456789abcdef"}}, 404, "unknown_run"),
    ("get", "/images/", {}, 404, "not_found"),
    ("get", "/nothing", {}, 404, "not_found"),
    ("post", "/topics", {}, 405, "method_not_allowed"),
    ("delete", "/topics/red-dresses", {}, 405, "method_not_allowed"),
    ("get", "/search/batch", {}, 405, "method_not_allowed"),
])
def test_every_bad_input_is_a_4xx_json_error(api, method, path, kwargs, status, error):
    r = getattr(api, method)(path, **kwargs) if method != "post" else api.request("POST", path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == error and r.json()["detail"]
    assert r.headers["x-run-id"] and r.headers["cache-control"] == "no-store"


def test_openapi_spec_is_served_and_committed(api):
    served = api.get("/openapi.json").json()
    assert set(served["paths"]) == {"/health", "/topics", "/topics/{slug}", "/topics/{slug}/feed", "/images/{product_id}",
                                    "/search", "/search/batch", "/versions", "/changes", "/export.ndjson",
                                    "/export.parquet", "/products/{product_id}/similar", "/search/image"}
    assert json.loads(SPEC_PATH.read_text()) == openapi_spec(), \
        "run `python -c 'from pinlanding.feeds.api import export_openapi; export_openapi()'`"


def test_cors_is_off_by_default_and_configurable(tmp_path, api):
    assert "access-control-allow-origin" not in api.get("/health", headers={"Origin": "https://a.example"}).headers
    layout = published_run(tmp_path, search_feeds([f"p{i:03d}" for i in range(36)]))
    app = create_app(layout, ServeConfig(cors_origins=["https://search.example"]), load_model=False)
    with serve_in_thread(app) as base:
        ok = httpx.get(base + "/topics", headers={"Origin": "https://search.example"})
        other = httpx.get(base + "/topics", headers={"Origin": "https://evil.example"})
        pre = httpx.options(base + "/search", headers={"Origin": "https://search.example",
                                                       "Access-Control-Request-Method": "GET"})
    assert ok.headers["access-control-allow-origin"] == "https://search.example"
    assert "etag" in ok.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in other.headers
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://search.example"


def test_search_is_parse_only_without_a_model(tmp_path):
    layout = published_run(tmp_path, search_feeds([f"p{i:03d}" for i in range(36)]))
    app = create_app(layout, ServeConfig(), load_model=False)
    with serve_in_thread(app) as base:
        assert wait_for_search(base, timeout=30) == "ready"
        assert httpx.get(base + "/health").json()["embedding"] == "off"
        assert httpx.get(base + "/search", params={"q": "red dress"}).json()["match"] == "exact"


def test_search_is_503_while_warming_then_answers(tmp_path):
    release = threading.Event()

    def slow_encoder(texts: list[str]) -> np.ndarray:
        release.wait(timeout=30)
        return bag_of_words(texts)

    layout = published_run(tmp_path, search_feeds([f"p{i:03d}" for i in range(36)]))
    app = create_app(layout, ServeConfig(cache_embeddings=False), encoder=slow_encoder)
    with serve_in_thread(app) as base:
        assert httpx.get(base + "/health").json()["search"] == "warming"
        r = httpx.get(base + "/search", params={"q": "dress"})
        assert r.status_code == 503 and r.headers["retry-after"] == "2" and "warming up" in r.json()["detail"]
        assert httpx.post(base + "/search/batch", json={"queries": ["dress"]}).status_code == 503
        assert httpx.get(base + "/topics/red-dresses").status_code == 200  # other routes answer meanwhile
        release.set()
        assert wait_for_search(base, timeout=30) == "ready"
        assert httpx.get(base + "/search", params={"q": "women shoes"}).json()["collection"]["slug"] == "women-shoes"


def test_a_broken_encoder_is_reported_not_fatal(tmp_path):
    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("no model here")

    layout = published_run(tmp_path, search_feeds([f"p{i:03d}" for i in range(36)]))
    app = create_app(layout, ServeConfig(cache_embeddings=False), encoder=broken)
    with serve_in_thread(app) as base:
        assert wait_for_search(base, timeout=30) == "failed"
        r = httpx.get(base + "/search", params={"q": "dress"})
        assert r.status_code == 503 and "no model here" in r.json()["detail"]
        assert httpx.get(base + "/topics").status_code == 200


def test_serve_requires_feeds_and_takes_host_and_port_flags(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="run `pinlanding run`"):
        serve_api(RunLayout(tmp_path), ServeConfig())
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")

    from pinlanding.collections import cli
    from pinlanding.feeds import api as api_module

    seen = {}
    monkeypatch.setattr(api_module, "serve_api", lambda layout, cfg: seen.update(cfg=cfg))
    result = CliRunner().invoke(cli.app, ["serve", "--run", str(tmp_path), "--host", "0.0.0.0", "--port", "9001",
                                          "--set", "serve.cors_origins=[https://a.example]"])
    assert result.exit_code == 0, result.output
    assert (seen["cfg"].host, seen["cfg"].port, seen["cfg"].cors_origins) == ("0.0.0.0", 9001, ["https://a.example"])
    result = CliRunner().invoke(cli.app, ["serve", "--run", str(tmp_path), "--set", "serve.port=9002"])
    assert result.exit_code == 0 and seen["cfg"].port == 9002
    bad = CliRunner().invoke(cli.app, ["serve", "--run", str(tmp_path), "--port", "70000"])
    assert bad.exit_code == 2 and "port" in bad.output


@pytest.mark.slow
def test_search_with_minilm_names_an_unparsed_product(tmp_path):
    ids = [f"p{i:03d}" for i in range(36)]
    feeds = search_feeds(ids) + [feed("track-pants", ids[:10], attrs=[("category", "track pants")])]
    # the packaged, verified MiniLM (in NumPy); /search waits for a new word's embedding here
    app = create_app(published_run(tmp_path, feeds), ServeConfig(embed_wait_ms=60000, cache_embeddings=False))
    with serve_in_thread(app) as base:
        assert wait_for_search(base, timeout=300) == "ready"
        body = httpx.get(base + "/search", params={"q": "grey sweatpan"}, timeout=120).json()
    assert body["collection"]["slug"] == "track-pants" and body["match"] == "partial"
    assert body["embedded"][0]["word"] == "sweatpan" and body["embedded"][0]["value"] == "track pant"
    assert body["embedded"][0]["similarity"] >= 0.9 and body["unmet"] == [{"key": "colour", "value": "grey"}]


def test_a_slow_new_word_is_answered_without_it_then_with_it(tmp_path):
    import time

    from test_api_matching import fake_encoder

    encode = fake_encoder({"frockish": "dress"})
    warmed = threading.Event()

    def encoder(texts: list[str]) -> np.ndarray:
        if warmed.is_set():
            time.sleep(0.3)  # a query word: slower than serve.embed_wait_ms
        return encode(texts)

    layout = published_run(tmp_path, search_feeds([f"p{i:03d}" for i in range(36)]))
    app = create_app(layout, ServeConfig(cache_embeddings=False, embed_wait_ms=20), encoder=encoder)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert wait_for_search(base, timeout=30) == "ready"
        warmed.set()
        first = client.get("/search", params={"q": "red frockish"})
        assert first.json()["pending"] == ["frockish"] and first.json()["match"] == "none"
        assert first.headers["cache-control"] == "no-store" and "etag" not in first.headers
        time.sleep(0.6)  # the embedding finished meanwhile
        again = client.get("/search", params={"q": "red frockish"})
        body = again.json()
        assert body["pending"] == [] and body["collection"]["slug"] == "red-dresses" and "etag" in again.headers
        assert body["embedded"] == [{"word": "frockish", "key": "category", "value": "dress", "similarity": 1.0}]
        batch = client.post("/search/batch", json={"queries": ["blue frockish"]}).json()["results"][0]
        assert batch["slug"] == "dresses"  # the batch waits for its words (this one was cached already)
