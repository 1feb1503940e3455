"""Filters on /topics, streamed exports (NDJSON and Parquet, read back with pyarrow), catalogue URLs in items."""
from __future__ import annotations

import io
import json

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feedkit import feed, published_run
from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.schemas import PRODUCTS
from serving import serve_in_thread

from pinlanding.feeds.api import create_app
from pinlanding.feeds.config import ServeConfig

IDS = [f"p{i:03d}" for i in range(36)]


def feeds() -> list[dict]:
    return [feed("red-dresses", IDS[0:12], attrs=[("color", "red"), ("category", "dress")]),
            feed("red-cotton-dresses", IDS[0:4], attrs=[("color", "red"), ("category", "dress"), ("material", "cotton")]),
            feed("blue-shirts", IDS[10:16], attrs=[("color", "blue"), ("category", "shirt")]),
            feed("women-t-shirts", IDS[20:30], attrs=[("gender", "women"), ("category", "T-Shirts")])]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(published_run(tmp_path_factory.mktemp("exports"), feeds()), ServeConfig(max_page_size=50),
                     load_model=False)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=30) as c:
        yield c


def slugs(client, **params) -> list[str]:
    r = client.get("/topics", params=params)
    assert r.status_code == 200, r.text
    return [t["slug"] for t in r.json()["items"]]


def test_attribute_and_size_filters(client):
    assert slugs(client, color="red") == ["red-dresses", "red-cotton-dresses"]
    assert slugs(client, colour="Red", material="cotton") == ["red-cotton-dresses"]  # family and spelling-insensitive
    assert slugs(client, category="tshirt") == ["women-t-shirts"]  # "T-Shirts" and "tshirt" are one value
    assert slugs(client, category="dress", min_size=5) == ["red-dresses"]
    assert slugs(client, max_size=6) == ["red-cotton-dresses", "blue-shirts"]
    assert slugs(client, color="green") == []
    assert slugs(client, q="dress", material="cotton") == ["red-cotton-dresses"]
    body = client.get("/topics", params={"color": "red", "limit": 1}).json()
    assert body["total"] == 2 and body["filters"] == {"color": "red"} and len(body["items"]) == 1
    bad = client.get("/topics", params={"flavour": "sweet"})
    assert bad.status_code == 422 and "color" in bad.json()["detail"][0]["problem"]


def test_ndjson_export_streams_every_collection(client):
    r = client.get("/export.ndjson")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    rid = r.headers["x-run-id"]
    assert f"feeds-{rid}.ndjson" in r.headers["content-disposition"]
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert [x["slug"] for x in rows] == [f["slug"] for f in feeds()] and {x["run_id"] for x in rows} == {rid}
    first = rows[0]["products"][0]
    assert first == {"rank": 1, "product_id": "p000", "score": 1.0, "title": rows[0]["products"][0]["title"],
                     "brand": "<b>Brand</b>", "price": 100.0, "currency": "INR", "image_url": "/images/p000",
                     "product_url": None}
    assert [p["rank"] for p in rows[0]["products"]] == list(range(1, 13))


def test_parquet_export_reads_back_with_pyarrow(client):
    with client.stream("GET", "/export.parquet") as r:
        assert r.status_code == 200 and "chunked" in r.headers.get("transfer-encoding", "chunked")
        data = b"".join(r.iter_bytes())
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 4 and table.column("slug").to_pylist() == [f["slug"] for f in feeds()]
    assert set(table.column("run_id").to_pylist()) == {r.headers["x-run-id"]}
    products = table.column("products").to_pylist()
    assert [len(p) for p in products] == [12, 4, 6, 10]
    assert products[2][0]["product_id"] == "p010" and products[2][0]["image_url"] == "/images/p010"
    assert table.column("attributes").to_pylist()[1] == [{"key": "color", "value": "red"},
                                                         {"key": "category", "value": "dress"},
                                                         {"key": "material", "value": "cotton"}]


def test_parquet_export_streams_row_groups(tmp_path):
    many = [feed(f"c{i:04d}", IDS[i % 30:i % 30 + 5], attrs=[("color", f"c{i}"), ("category", "dress")])
            for i in range(600)]
    app = create_app(published_run(tmp_path, many), ServeConfig(), load_model=False)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=30) as c:
        with c.stream("GET", "/export.parquet") as r:
            chunks = list(r.iter_raw())
    table = pq.ParquetFile(io.BytesIO(b"".join(chunks)))
    assert table.metadata.num_rows == 600 and table.metadata.num_row_groups == 3  # 256 collections a group
    assert len(chunks) >= 2


def test_items_carry_the_catalogues_product_and_image_urls(tmp_path):
    layout = published_run(tmp_path, feeds())
    with_urls = pa.schema(list(PRODUCTS) + [pa.field("image_url", pa.string())])  # url is a catalogue field
    products = read_table(layout.products, PRODUCTS).to_pylist()
    for p in products:  # the catalogue's own columns, as a reader that keeps them would write them
        p["url"] = f"https://shop.example/p/{p['product_id']}" if p["product_id"] != "p001" else None
        p["image_url"] = f"https://img.example/{p['product_id']}.jpg"
    write_table(pa.Table.from_pylist(products, schema=with_urls), layout.products, with_urls)
    app = create_app(layout, ServeConfig(), load_model=False)
    with serve_in_thread(app) as base:
        items = httpx.get(base + "/topics/red-dresses/feed", params={"limit": 2}).json()["items"]
    assert [(i["product_url"], i["image_url"]) for i in items] == [
        ("https://shop.example/p/p000", "https://img.example/p000.jpg"), (None, "https://img.example/p001.jpg")]
