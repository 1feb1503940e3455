"""Merchandising decisions honoured by the feeds stage, the site and the API; URL changes between runs."""
from __future__ import annotations

import json
from datetime import date, timedelta

import pyarrow as pa
from fastapi.testclient import TestClient
from feedkit import make_run, synthetic_assignments, topic

from pinlanding.collections.artifacts import read_json, read_table, write_table
from pinlanding.collections.schemas import ASSIGNMENTS, PRODUCTS, TOPICS, VOCAB
from pinlanding.feeds.api import create_app
from pinlanding.feeds.build import read_feeds, run_feeds
from pinlanding.feeds.merch import apply_rules, apply_to_products, url_changes
from pinlanding.feeds.site import run_site, safe_name
from pinlanding.vocab.decisions import Decision, DecisionStore, Merchandising, ReviewState, decisions_path
from pinlanding.vocab.topics import topic_id


def _products(*ids: str) -> list[dict]:
    return [{"product_id": p, "score": 1 - i / 10, "variants": []} for i, p in enumerate(ids)]


def test_pins_move_products_and_exclusions_remove_them():
    rules = Merchandising(pins={"d": 1, "x": 3}, excluded={"b"})
    out = apply_to_products(_products("a", "b", "c", "d", "e"), rules, catalogue={"x"})
    assert [p["product_id"] for p in out] == ["d", "a", "x", "c", "e"]
    assert out[2]["score"] is None  # pinned from the catalogue, not ranked
    # a pin beyond the end lands last; a pin of an unknown product is ignored; the cut keeps pins
    assert [p["product_id"] for p in apply_to_products(_products("a", "b"), Merchandising(pins={"a": 9, "zz": 1}))] == ["b", "a"]
    cut = apply_to_products(_products("a", "b", "c", "d"), Merchandising(pins={"d": 4}), limit=2)
    assert [p["product_id"] for p in cut] == ["a", "d"]


def test_publish_window_drops_a_feed_outside_it():
    feed = {"topic_id": "t", "slug": "s", "title": "T", "size": 2, "products": _products("a", "b")}
    today = date(2026, 11, 28)
    for window, published in ((("2026-12-01", ""), False), (("", "2026-11-27"), False),
                              (("2026-11-28", "2026-11-28"), True), (("", "2026-12-31"), True)):
        state = ReviewState(merch={"t": Merchandising(window=window, title="New")})
        kept, dropped, changed = apply_rules([feed], state, today)
        assert (len(kept) == 1) == published and changed == 1
        assert published or dropped[0]["reason"] == "outside_window"
        assert not published or kept[0]["title"] == "New"


def test_url_changes_alias_moved_slugs_and_tombstone_dropped_ones():
    previous = [{"topic_id": "a", "slug": "blue-dresses", "aliases": ["old-blue"]},
                {"topic_id": "b", "slug": "red-dresses", "aliases": []},
                {"topic_id": "c", "slug": "kept", "aliases": []}]
    feeds = [{"topic_id": "a2", "slug": "navy-dresses", "aliases": []}, {"topic_id": "c", "slug": "kept", "aliases": []}]
    changes = url_changes(previous, feeds, {"a": "a2", "b": "b2"}, gone_before=["ancient", "kept"])
    assert feeds[0]["aliases"] == ["blue-dresses", "old-blue"]
    assert changes["aliased"] == {"blue-dresses": "navy-dresses", "old-blue": "navy-dresses"}
    assert changes["gone"] == ["ancient", "red-dresses"]  # "kept" is live again
    assert changes["added"] == ["navy-dresses"]


def _decide(layout, *decisions: Decision) -> None:
    DecisionStore(decisions_path(layout)).extend(list(decisions))


def test_merchandising_reaches_feeds_site_and_api(tmp_path, spark):
    ctx = make_run(tmp_path)
    run_feeds(ctx)
    before = {f["slug"]: f for f in read_feeds(ctx.layout)}
    lines_before = {json.loads(line)["slug"]: line for line in ctx.layout.feeds_jsonl.read_text().splitlines()}
    women_red = before["women-red"]
    last = women_red["products"][-1]["product_id"]
    first = women_red["products"][0]["product_id"]
    _decide(ctx.layout,
            Decision(action="pin", who="m", topic_id="women-red", value=last, target="1"),
            Decision(action="exclude", who="m", topic_id="women-red", value=first),
            Decision(action="retitle", who="m", topic_id="women-red", target="Red <b>for</b> her"),
            Decision(action="window", who="m", topic_id="blue", value=str(date.today() + timedelta(days=3))))
    counts = run_feeds(ctx)
    after = {f["slug"]: f for f in read_feeds(ctx.layout)}
    ids = [p["product_id"] for p in after["women-red"]["products"]]
    assert ids[0] == last and first not in ids and after["women-red"]["title"] == "Red <b>for</b> her"
    assert "blue" not in after and counts["merchandised"] == 2 and counts["outside_window"] == 1
    lines_after = {json.loads(line)["slug"]: line for line in ctx.layout.feeds_jsonl.read_text().splitlines()}
    untouched = set(lines_before) - {"women-red", "blue"}
    assert untouched and all(lines_after[s] == lines_before[s] for s in untouched)  # byte-identical

    run_site(ctx)
    page = (ctx.layout.dir("site") / "c" / f"{safe_name('women-red')}.html").read_text()
    assert "Red &lt;b&gt;for&lt;/b&gt; her" in page and "Red <b>for</b> her" not in page
    changes = read_json(ctx.layout.dir("feeds") / "changes.json")
    assert "blue" in changes["gone"]
    tomb = (ctx.layout.dir("site") / "c" / f"{safe_name('blue')}.html").read_text()
    assert "no longer available" in tomb
    api = TestClient(create_app(ctx.layout))
    assert api.get("/topics/blue", follow_redirects=False).status_code == 410
    assert api.get("/topics/women-red").json()["title"] == "Red <b>for</b> her"


def test_renamed_value_keeps_the_old_slug_as_an_alias(tmp_path, spark):
    blue = [("colour", "blue")]
    ctx = make_run(tmp_path, pa.Table.from_pylist(
        [topic(topic_id(blue), blue, title="Blue", slug="blue"),
         topic(topic_id([("colour", "red")]), [("colour", "red")], title="Red", slug="red")], schema=TOPICS))
    write_table(pa.Table.from_pylist([{"key": "colour", "value": v, "variants": [], "product_count": 12,
                                       "status": "approved", "judge_score": None, "provenance": "{}"}
                                      for v in ("navy", "red", "black")], schema=VOCAB),
                ctx.layout.root / "vocabulary" / "vocabulary.parquet", VOCAB)
    run_feeds(ctx)
    red_before = [line for line in ctx.layout.feeds_jsonl.read_text().splitlines() if '"slug": "red"' in line]
    _decide(ctx.layout, Decision(action="rename", who="m", key="colour", value="blue", target="navy"))
    navy = [("colour", "navy")]  # what the rerun of vocab, topics and assign produces
    write_table(pa.Table.from_pylist([topic(topic_id(navy), navy, title="Navy", slug="navy"),
                                      topic(topic_id([("colour", "red")]), [("colour", "red")], title="Red", slug="red")],
                                     schema=TOPICS), ctx.layout.topics, TOPICS)
    renamed = synthetic_assignments(read_table(ctx.layout.products, PRODUCTS))
    renamed = pa.Table.from_pylist([{**r, "value": "navy" if r["value"] == "blue" else r["value"]}
                                    for r in renamed.to_pylist()], schema=ASSIGNMENTS)
    write_table(renamed, ctx.layout.assignments, ASSIGNMENTS)
    counts = run_feeds(ctx)
    feeds = {f["slug"]: f for f in read_feeds(ctx.layout)}
    assert feeds["navy"]["aliases"] == ["blue"] and counts["urls_aliased"] == 1 and counts["urls_gone"] == 0
    assert [line for line in ctx.layout.feeds_jsonl.read_text().splitlines() if '"slug": "red"' in line] == red_before
    api = TestClient(create_app(ctx.layout))
    moved = api.get("/topics/blue", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == "/topics/navy"
    run_site(ctx)
    assert "/navy.html" in (ctx.layout.dir("site") / "c" / f"{safe_name('blue')}.html").read_text()
