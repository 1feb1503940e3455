"""Visual search routes of the feed API over real HTTP: similar products, a photo query, refused uploads."""
from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from feedkit import mean_colour, published_run, with_visual_index
from pinlanding.feeds.api import create_app
from serving import serve_in_thread
from pinlanding.feeds.config import ServeConfig

SIZE = (8, 6)  # the photos of feedkit's products


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    layout = with_visual_index(published_run(tmp_path_factory.mktemp("visual")))
    cfg = ServeConfig(max_page_size=10, embed_words=False, max_upload_bytes=20_000, max_upload_pixels=100_000,
                      record_versions=False, cache_embeddings=False)
    app = create_app(layout, cfg, load_model=False, photo_encoder=mean_colour, photo_size=SIZE)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def photo(rgb, fmt="JPEG", size=(6, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format=fmt)
    return buf.getvalue()


def test_similar_products_leave_out_the_products_variants_and_carry_collections(api):
    res = api.get("/products/p001/similar", params={"k": 4})
    assert res.status_code == 200 and res.headers["etag"]
    body = res.json()
    assert body["product"]["product_id"] == "p001"
    assert {c["slug"] for c in body["product"]["collections"]} == {"red-dresses"}  # feedkit: p000-p011
    items = body["items"]
    # feedkit's photos repeat every 6 products (byte-identical): p007, p013, ... are p001's variants
    assert len(items) == 4 and all(int(i["product_id"][1:]) % 6 != 1 for i in items)
    assert len({int(i["product_id"][1:]) % 6 for i in items}) == 4  # one product per variant group
    assert [i["rank"] for i in items] == [1, 2, 3, 4]
    assert all(a["score"] >= b["score"] for a, b in zip(items, items[1:]))
    assert all(i["image_url"] == f"/images/{i['product_id']}" and i["title"] for i in items)
    assert api.get(items[0]["image_url"]).status_code == 200
    shown = next(i for i in items if i["collections"])
    assert {"slug", "title"} <= set(shown["collections"][0])
    assert api.get("/products/p999/similar").status_code == 404
    assert api.get("/products/p001/similar", params={"k": 11}).status_code == 422


def test_photo_query_finds_products_of_that_photo(api):
    res = api.post("/search/image", content=photo((40 * 2, 80, 120)), params={"k": 3},
                   headers={"content-type": "image/jpeg"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert int(body["items"][0]["product_id"][1:]) % 6 == 2  # the colour of p002, p008, ...
    assert body["items"][0]["score"] > 0.99 and len(body["items"]) == 3
    assert body["collections"] and all(0 < c["score"] <= 1 for c in body["collections"])
    assert res.headers["cache-control"] == "no-store"


def test_corrupt_oversized_and_bomb_uploads_are_refused(api):
    corrupt = api.post("/search/image", content=b"\xff\xd8\xff\xe0 this is no jpeg")
    assert corrupt.status_code == 422 and corrupt.json()["error"] == "bad_image"
    truncated = api.post("/search/image", content=photo((1, 2, 3), size=(60, 80))[:150])
    assert truncated.status_code == 422
    assert api.post("/search/image", content=b"").status_code == 422
    big = api.post("/search/image", content=bytes(20_001))
    assert big.status_code == 413 and big.json()["error"] == "too_large"
    bomb = io.BytesIO()
    Image.new("1", (1_000, 1_000)).save(bomb, format="PNG")  # a million pixels in a few hundred bytes
    refused = api.post("/search/image", content=bomb.getvalue())
    assert refused.status_code == 413 and "pixels" in refused.json()["detail"]


def test_a_run_without_an_index_answers_503(tmp_path):
    layout = published_run(tmp_path)
    app = create_app(layout, ServeConfig(embed_words=False, record_versions=False, cache_embeddings=False),
                     load_model=False, photo_encoder=mean_colour, photo_size=SIZE)
    with serve_in_thread(app) as base:
        res = httpx.get(f"{base}/products/p001/similar")
        assert res.status_code == 503 and "assign stage" in res.json()["detail"]
        assert httpx.post(f"{base}/search/image", content=photo((0, 0, 0))).status_code == 503
        assert httpx.get(f"{base}/topics").status_code == 200


def test_concurrent_photos_share_forward_passes():
    import threading
    import time

    from pinlanding.feeds.visual_api import PhotoBatcher

    entered, release = threading.Event(), threading.Event()

    def slow(pixels):
        entered.set()
        release.wait(5)  # holds the first pass while the other requests arrive
        return mean_colour(pixels)

    batcher = PhotoBatcher(slow, max_batch=8)
    photos = [np.full((8, 6, 3), 40 * i, np.uint8) for i in range(6)]
    out: list = [None] * 6

    def ask(i: int) -> None:
        out[i] = batcher.embed(photos[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    threads[0].start()
    assert entered.wait(5)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 5
    while len(batcher._waiting) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(5)
    assert batcher.passes == 2  # the first photo alone, then the five that waited, together
    assert all(np.allclose(o, mean_colour(p[None])[0]) for o, p in zip(out, photos))
    broken = PhotoBatcher(lambda pixels: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        broken.embed(photos[0])
