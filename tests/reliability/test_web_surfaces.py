"""The web surfaces (issue 20, defects 7, 8 and 9): the feed API is never sniffed, the site copies photo
bytes, the review app refuses big bodies before holding them and short tokens."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from testlib import make_image

from feedkit import published_run

from pinlanding.collections.layout import RunLayout
from pinlanding.feeds.api import create_app as feed_api
from pinlanding.feeds.config import ServeConfig
from pinlanding.feeds.site import link_image
from pinlanding.vocab import review


def test_the_feed_api_answers_with_nosniff(tmp_path: Path) -> None:
    client = TestClient(feed_api(published_run(tmp_path), ServeConfig(), load_model=False))
    for path in ("/health", "/topics", "/topics/red-dresses/feed", "/topics/nope"):
        assert client.get(path).headers.get("x-content-type-options") == "nosniff", path


def test_the_site_copies_photo_bytes_never_links(tmp_path: Path) -> None:
    src = make_image(tmp_path / "catalogue" / "1.jpg")
    images = tmp_path / "site" / "images"
    images.mkdir(parents=True)
    name = link_image(str(src), images, "1", "abcdef0123456789")
    published = images / name
    assert published.read_bytes() == src.read_bytes()
    assert not os.path.samefile(published, src) and src.stat().st_nlink == 1
    make_image(src, color=(0, 0, 0))  # a later change of the source does not reach the published site
    assert published.read_bytes() != src.read_bytes()


def _form_client(tmp_path: Path) -> TestClient:
    return TestClient(review.create_app(RunLayout(tmp_path / "run")))


def test_the_review_app_refuses_an_oversized_body_from_its_declared_length(tmp_path: Path) -> None:
    client = _form_client(tmp_path)
    headers = {"content-type": "application/x-www-form-urlencoded", "content-length": str(300_000_000)}
    assert client.post("/reviewer", content=b"who=x", headers=headers).status_code == 413


def test_the_review_app_stops_reading_a_streamed_body_at_its_limit(tmp_path: Path) -> None:
    app = review.create_app(RunLayout(tmp_path / "run"))
    pulled, sent = [], []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/reviewer", "raw_path": b"/reviewer", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"t"), (b"content-type", b"application/x-www-form-urlencoded")],
             "client": ("127.0.0.1", 1), "server": ("t", 80)}

    async def receive():  # a chunked body of 64 MB, no Content-Length: counted as the app pulls it
        pulled.append(65_536)
        return {"type": "http.request", "body": b"x" * 65_536, "more_body": len(pulled) < 1000}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert sum(pulled) < 200_000  # it stopped at the limit instead of buffering the whole body


def test_a_review_token_needs_sixteen_characters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    served: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(kw["host"]))
    layout = RunLayout(tmp_path / "run")
    (layout.root / "vocabulary").mkdir(parents=True)
    (layout.root / "vocabulary" / "vocabulary.parquet").write_bytes(b"")
    monkeypatch.setattr(review, "create_app", lambda *a, **kw: None)
    with pytest.raises(ValueError, match="at least 16 characters"):
        review.serve_review(layout, host="0.0.0.0", token="x")
    review.serve_review(layout, host="0.0.0.0", token="k" * 16)
    assert served == ["0.0.0.0"]
