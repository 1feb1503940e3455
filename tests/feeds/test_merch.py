"""Merchandising decisions honoured by the feeds stage, the site and the API; URL changes between runs."""
from __future__ import annotations

import json
from datetime import date, timedelta

import pyarrow as pa
from fastapi.testclient import TestClient
from feedkit import TYPES, make_run, synthetic_assignments, topic

from pinlanding.collections.artifacts import read_json, read_table, write_table
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ASSIGNMENTS, PRODUCTS, TOPICS, VOCAB
from pinlanding.feeds.api import create_app
from pinlanding.feeds.build import read_feeds, run_feeds
from pinlanding.feeds.config import ServeConfig
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
    # a successor merged into another feed as a duplicate: the old slug follows it there
    feeds = [{"topic_id": "x", "slug": "dresses", "aliases": ["crimson-dresses"]}]
    changes = url_changes([{"topic_id": "b", "slug": "red-dresses", "aliases": []}], feeds, {"b": "b2"},
                          merged={"b2": "crimson-dresses"})
    assert changes["aliased"] == {"red-dresses": "dresses"} and changes["gone"] == []
    # a feed still published keeps the old aliases it lost (a renamed duplicate no longer merges into it)
    feeds = [{"topic_id": "x", "slug": "dresses", "aliases": ["crimson-dresses"]}]
    changes = url_changes([{"topic_id": "x", "slug": "dresses", "aliases": ["red-dresses"]}], feeds, {"x": "x"})
    assert feeds[0]["aliases"] == ["crimson-dresses", "red-dresses"]
    assert changes["aliased"] == {"red-dresses": "dresses"} and changes["gone"] == []


def _decide(layout, *decisions: Decision) -> None:
    DecisionStore(decisions_path(layout)).extend(list(decisions))


def test_merchandising_reaches_feeds_site_and_api(tmp_path, spark):
    ctx = make_run(tmp_path, pa.Table.from_pylist([topic(kind, [("category", kind)]) for kind in TYPES], schema=TOPICS))
    call_stage(run_feeds, *ctx)
    lines_before = {json.loads(line)["slug"]: line for line in ctx.layout.feeds_jsonl.read_text().splitlines()}
    assert set(lines_before) == set(TYPES)
    ranked = [p["product_id"] for p in {f["slug"]: f for f in read_feeds(ctx.layout)}["dress"]["products"]]
    _decide(ctx.layout,
            Decision(action="pin", who="m", topic_id="dress", value=ranked[-1], target="1"),
            Decision(action="exclude", who="m", topic_id="dress", value=ranked[0]),
            Decision(action="retitle", who="m", topic_id="dress", target="Red <b>for</b> her"),
            Decision(action="window", who="m", topic_id="shoes", value=str(date.today() + timedelta(days=3))))
    counts = call_stage(run_feeds, *ctx)
    after = {f["slug"]: f for f in read_feeds(ctx.layout)}
    ids = [p["product_id"] for p in after["dress"]["products"]]
    assert ids[0] == ranked[-1] and ranked[0] not in ids and after["dress"]["title"] == "Red <b>for</b> her"
    assert "shoes" not in after and counts["merchandised"] == 2 and counts["outside_window"] == 1
    lines_after = {json.loads(line)["slug"]: line for line in ctx.layout.feeds_jsonl.read_text().splitlines()}
    assert lines_after["shirt"] == lines_before["shirt"]  # the untouched collection is byte-identical

    call_stage(run_site, *ctx)
    page = (ctx.layout.dir("site") / "c" / f"{safe_name('dress')}.html").read_text()
    assert "Red &lt;b&gt;for&lt;/b&gt; her" in page and "Red <b>for</b> her" not in page
    changes = read_json(ctx.layout.dir("feeds") / "changes.json")
    assert "shoes" in changes["gone"]
    tomb = (ctx.layout.dir("site") / "c" / f"{safe_name('shoes')}.html").read_text()
    assert "no longer available" in tomb
    api = TestClient(create_app(ctx.layout, ServeConfig(), load_model=False))
    assert api.get("/topics/shoes", follow_redirects=False).status_code == 410
    assert api.get("/topics/dress").json()["title"] == "Red <b>for</b> her"


def test_renamed_value_keeps_the_old_slug_as_an_alias(tmp_path, spark):
    def topics(*kinds: str) -> pa.Table:
        return pa.Table.from_pylist([topic(topic_id([("category", k)]), [("category", k)], title=k.title(), slug=k)
                                     for k in kinds], schema=TOPICS)

    ctx = make_run(tmp_path, topics("shirt", "dress"))
    write_table(pa.Table.from_pylist([{"key": "category", "value": v, "variants": [], "product_count": 12,
                                       "status": "approved", "judge_score": None, "provenance": "{}"}
                                      for v in ("top", "dress", "shoes")], schema=VOCAB),
                ctx.layout.root / "vocabulary" / "vocabulary.parquet", VOCAB)
    call_stage(run_feeds, *ctx)
    dress_before = [line for line in ctx.layout.feeds_jsonl.read_text().splitlines() if '"slug": "dress"' in line]
    _decide(ctx.layout, Decision(action="rename", who="m", key="category", value="shirt", target="top"))
    write_table(topics("top", "dress"), ctx.layout.topics, TOPICS)  # what the rerun of vocab, topics, assign makes
    renamed = [{**r, "value": "top" if r["value"] == "shirt" else r["value"]}
               for r in synthetic_assignments(read_table(ctx.layout.products, PRODUCTS)).to_pylist()]
    write_table(pa.Table.from_pylist(renamed, schema=ASSIGNMENTS), ctx.layout.assignments, ASSIGNMENTS)
    counts = call_stage(run_feeds, *ctx)
    feeds = {f["slug"]: f for f in read_feeds(ctx.layout)}
    assert feeds["top"]["aliases"] == ["shirt"] and counts["urls_aliased"] == 1 and counts["urls_gone"] == 0
    assert [line for line in ctx.layout.feeds_jsonl.read_text().splitlines() if '"slug": "dress"' in line] == dress_before
    api = TestClient(create_app(ctx.layout, ServeConfig(), load_model=False))
    moved = api.get("/topics/shirt", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == "/topics/top"
    call_stage(run_site, *ctx)
    assert "top.html" in (ctx.layout.dir("site") / "c" / f"{safe_name('shirt')}.html").read_text()
