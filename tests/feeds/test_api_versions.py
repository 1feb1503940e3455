"""Versions and HTTP caching: run id on every response, ETag / Last-Modified / Cache-Control, 304, /changes."""
from __future__ import annotations

from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from feedkit import feed, published_run
from pinlanding.feeds import versions
from serving import serve_in_thread, wait_for_search

from pinlanding.feeds.api import create_app
from pinlanding.feeds.config import ServeConfig

IDS = [f"p{i:03d}" for i in range(36)]


def feeds_v1() -> list[dict]:
    return [feed("red-dresses", IDS[0:12], attrs=[("colour", "red"), ("category", "dress")]),
            feed("blue-shirts", IDS[10:16], attrs=[("colour", "blue"), ("category", "shirt")]),
            feed("women-shoes", IDS[20:30], attrs=[("gender", "women"), ("category", "shoes")])]


def feeds_v2() -> list[dict]:
    red, blue, _ = feeds_v1()
    red["products"] = red["products"][:8] + [{"product_id": "p033", "score": 0.5}]  # 4 left, 1 entered
    red["size"] = 9
    blue["title"] = "Blue Shirts, Renamed"
    added = feed("black-shoes", IDS[20:26], attrs=[("colour", "black"), ("category", "shoes")])
    return [red, blue, added]  # women-shoes removed


@pytest.fixture()
def client(tmp_path):
    app = create_app(published_run(tmp_path, feeds_v1()), ServeConfig(cache_max_age=60), load_model=False)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as c:
        assert wait_for_search(base, timeout=30) == "ready"
        yield c


def test_every_response_carries_the_run_id(client):
    rid = client.get("/health").json()["run_id"]
    for path in ("/health", "/topics", "/topics/red-dresses", "/topics/red-dresses/feed", "/search?q=red+dress",
                 "/versions", "/topics/nope", "/export.ndjson"):
        assert client.get(path).headers["x-run-id"] == rid, path
    assert client.post("/search/batch", json={"queries": ["red dress"]}).headers["x-run-id"] == rid
    assert client.get("/topics").json()["run_id"] == rid and client.get("/search", params={"q": "dress"}).json()["run_id"] == rid


def test_run_id_is_a_digest_of_the_feeds():
    assert versions.run_id(feeds_v1()) == versions.run_id(list(reversed(feeds_v1())))  # order-free
    changed = feeds_v1()
    changed[0]["products"][0]["score"] = 0.5
    assert versions.run_id(changed) != versions.run_id(feeds_v1())


@pytest.mark.parametrize("path", ["/topics", "/topics/red-dresses", "/topics/red-dresses/feed?limit=2",
                                  "/search?q=red+dress", "/changes?since=RUN", "/export.ndjson"])
def test_repeat_with_the_same_etag_is_304(client, path):
    path = path.replace("RUN", client.get("/health").json()["run_id"])
    first = client.get(path)
    assert first.status_code == 200
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert etag.startswith('"') and first.headers["cache-control"] == "public, max-age=60"
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert again.headers["x-run-id"] and again.headers["last-modified"] == modified
    assert client.get(path, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304  # weak form, in a list
    assert client.get(path, headers={"If-None-Match": "*"}).status_code == 304
    assert client.get(path, headers={"If-None-Match": '"stale"'}).status_code == 200
    assert client.get(path, headers={"If-Modified-Since": modified}).status_code == 304
    earlier = format_datetime(datetime.now(timezone.utc) - timedelta(days=3650), usegmt=True)
    assert client.get(path, headers={"If-Modified-Since": earlier}).status_code == 200
    assert client.get(path, headers={"If-Modified-Since": "not a date"}).status_code == 200


def test_head_is_get_without_the_body(client):
    get = client.get("/topics/red-dresses")
    head = client.head("/topics/red-dresses")
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == get.headers["etag"]
    assert head.headers["content-length"] == get.headers["content-length"]
    assert client.head("/topics/red-dresses", headers={"If-None-Match": get.headers["etag"]}).status_code == 304
    assert client.head("/topics/nope").status_code == 404


def test_etags_differ_by_url_and_health_is_not_cached(client):
    a = client.get("/topics/red-dresses/feed", params={"limit": 2}).headers["etag"]
    b = client.get("/topics/red-dresses/feed", params={"limit": 3}).headers["etag"]
    assert a != b
    for path in ("/health", "/versions"):  # these change while one version is served
        r = client.get(path)
        assert "etag" not in r.headers and r.headers["cache-control"] == "no-store"
        assert client.get(path, headers={"If-None-Match": "*"}).status_code == 200


def test_changes_between_two_runs(tmp_path):
    shared = str(tmp_path / "versions")  # both run folders record into one versions folder
    create_app(published_run(tmp_path / "a", feeds_v1()), ServeConfig(versions_dir=shared), load_model=False)
    old = versions.run_id(feeds_v1())
    app = create_app(published_run(tmp_path / "b", feeds_v2()), ServeConfig(versions_dir=shared), load_model=False)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        listed = client.get("/versions").json()
        assert {v["run_id"] for v in listed["versions"]} == {old, listed["run_id"]}
        assert [v["current"] for v in listed["versions"] if v["run_id"] == old] == [False]
        body = client.get("/changes", params={"since": old}).json()
        same = client.get("/changes", params={"since": listed["run_id"]}).json()
    assert body["since"] == old and body["run_id"] == versions.run_id(feeds_v2())
    assert [a["slug"] for a in body["added"]] == ["black-shoes"]
    assert [r["slug"] for r in body["removed"]] == ["women-shoes"]
    changed = {c["slug"]: c for c in body["changed"]}
    assert set(changed) == {"red-dresses", "blue-shirts"} and body["unchanged"] == 0
    assert changed["red-dresses"]["fields"] == ["products"]
    assert (changed["red-dresses"]["products_added"], changed["red-dresses"]["products_removed"]) == (1, 4)
    assert changed["blue-shirts"]["fields"] == ["title"] and changed["blue-shirts"]["title"] == "Blue Shirts, Renamed"
    assert (same["added"], same["removed"], same["changed"], same["unchanged"]) == ([], [], [], 3)


def test_versions_are_recorded_once_and_a_read_only_folder_still_serves(tmp_path):
    layout = published_run(tmp_path, feeds_v1())
    folder = versions.versions_folder(layout, None)
    create_app(layout, ServeConfig(), load_model=False)
    create_app(layout, ServeConfig(), load_model=False)
    assert [p.name for p in folder.iterdir()] == [f"{versions.run_id(feeds_v1())}.json.gz"]
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    app = create_app(layout, ServeConfig(versions_dir=str(blocked / "v")), load_model=False)
    with serve_in_thread(app) as base:
        assert httpx.get(base + "/versions").json()["versions"][0]["current"] is True
