"""Distinct collections: near-identical products collapse into one card, broad feeds interleave their
sub-values, and a feed whose first page repeats a broader one is merged into it as an alias."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

from feedkit import make_run, topic
from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import FEEDS, FEEDS_DROPPED, PRODUCTS, TOPICS
from pinlanding.feeds import scoring
from pinlanding.feeds.build import image_digest, merge_duplicates, run_feeds


def _feed(slug: str, ids: list[str], support: int, attrs: int = 1) -> dict:
    return {"topic_id": f"id-{slug}", "slug": slug, "title": slug.title(), "attributes": [{"key": f"k{i}", "value": "v"}
                                                                                          for i in range(attrs)],
            "products": [{"product_id": p, "score": 1.0, "variants": []} for p in ids], "judge_score": 0.8,
            "size": len(ids), "support": support, "aliases": []}


def test_merge_duplicates_keeps_the_broader_feed_and_records_the_alias():
    page = [f"p{i}" for i in range(24)]
    broad = _feed("trousers", page + ["x1", "x2"], support=500)
    narrow = _feed("trousers-for-men", page[:20] + ["m1", "m2", "m3", "m4"], support=300, attrs=2)  # 20 of 24
    narrower = _feed("black-trousers-for-men", page[:20] + ["b1", "b2", "b3", "b4"], support=50, attrs=3)
    other = _feed("shirts", page[:19] + [f"s{i}" for i in range(5)], support=900)  # 19 of 24 < 80%
    kept, dropped = merge_duplicates([narrow, other, broad, narrower], page=24, share=0.8)
    assert [f["slug"] for f in kept] == ["shirts", "trousers"]  # input order kept
    assert broad["aliases"] == ["trousers-for-men", "black-trousers-for-men"]  # broadest first
    assert other["aliases"] == []
    assert {d["slug"]: d["reason"] for d in dropped} == {"trousers-for-men": "duplicate_feed",
                                                         "black-trousers-for-men": "duplicate_feed"}
    assert "'trousers'" in dropped[0]["detail"] and "20 of its first 24" in dropped[0]["detail"]


def test_merge_duplicates_compares_short_feeds_on_their_own_length():
    a, b = _feed("a", ["p1", "p2", "p3", "p4", "p5"], 40), _feed("b", ["p1", "p2", "p3", "p4", "q"], 30)
    kept, dropped = merge_duplicates([a, b], page=24, share=0.8)
    assert [f["slug"] for f in kept] == ["a"] and a["aliases"] == ["b"] and len(dropped) == 1
    kept, _ = merge_duplicates([_feed("a", ["p1", "p2", "p3"], 40), _feed("b", ["p1", "p2", "q"], 30)], 24, 0.8)
    assert len(kept) == 2  # 2 of 3 < 80%


@pytest.mark.slow
def test_product_groups_by_brand_title_or_photo(spark):
    rows = [("p1", "Q&Q", "Q&Q Men Black Dial Watch", "img-a"),
            ("p2", "q&q", "q&q men black  dial-watch", "img-b"),  # same brand and normalized title as p1
            ("p3", "Titan", "Titan Men Black Dial Watch", "img-b"),  # same photo as p2: joins p1's group
            ("p4", "Titan", "Titan Men White Dial Watch", None),
            ("p5", "Other", "Titan Men White Dial Watch", None)]  # same title, other brand: not a variant
    df = spark.createDataFrame(rows, "product_id string, brand string, title string, image_digest string")
    groups = dict(scoring.product_groups(df).toPandas().itertuples(index=False))
    assert groups["p1"] == groups["p2"] == groups["p3"] == "p1"
    assert groups["p4"] == "p4" and groups["p5"] == "p5"


@pytest.mark.slow
def test_collapse_variants_keeps_the_best_ranked_card(spark):
    ranked = spark.createDataFrame([("t", "p1", 0.9, 2), ("t", "p2", 0.95, 1), ("t", "p3", 0.8, 3), ("u", "p1", 0.5, 1)],
                                   "topic_id string, product_id string, score double, rank int")
    groups = spark.createDataFrame([("p1", "g"), ("p2", "g"), ("p3", "p3")], "product_id string, group_id string")
    out = {(r.topic_id, r.product_id): (r.rank, list(r.variants))
           for r in scoring.collapse_variants(ranked, groups).collect()}
    assert out == {("t", "p2"): (1, ["p1"]), ("t", "p3"): (3, []), ("u", "p1"): (1, [])}


@pytest.mark.slow
def test_diversify_interleaves_values_the_topic_does_not_name(spark):
    # "trousers": 6 men's products score above 2 women's; "trousers for men" names gender
    rows = [(t, f"m{i}", i + 1) for t in ("trousers", "men") for i in range(6)] + \
           [("trousers", "w1", 7), ("trousers", "w2", 8)]
    ranked = spark.createDataFrame(rows, "topic_id string, product_id string, rank int")
    tattrs = spark.createDataFrame([("trousers", "category"), ("men", "category"), ("men", "gender")],
                                   "topic_id string, key string")
    values = spark.createDataFrame([(f"m{i}", "gender", "men") for i in range(6)] + [("w1", "gender", "women"),
                                                                                    ("w2", "gender", "women")],
                                   "product_id string, key string, value string")
    out = scoring.diversify(ranked, tattrs, values, max_products=5).toPandas().sort_values(["topic_id", "rank"])
    trousers = out[out.topic_id == "trousers"].product_id.tolist()
    assert trousers == ["m0", "w1", "m1", "w2", "m2"]  # level by gender, then relevance
    assert out[out.topic_id == "men"].product_id.tolist() == ["m0", "m1", "m2", "m3", "m4"]  # unchanged


@pytest.mark.slow
def test_feeds_stage_collapses_same_photo_and_title_products(tmp_path, spark):
    ctx = make_run(tmp_path, pa.Table.from_pylist([topic("dress", [("category", "dress")])], schema=TOPICS))
    products = read_table(ctx.layout.products, PRODUCTS).to_pylist()
    for p in products:  # every photo distinct, then p010 repeats p009's brand and title
        from PIL import Image
        Image.new("RGB", (6, 8), (7 * int(p["product_id"][1:]), 7, 9)).save(p["image_path"])
    products[10]["title"], products[10]["brand"] = products[9]["title"].upper(), products[9]["brand"]
    write_table(pa.Table.from_pylist(products, schema=PRODUCTS), ctx.layout.products, PRODUCTS)
    call_stage(run_feeds, *ctx)
    feed = read_table(ctx.layout.feeds, FEEDS).to_pylist()[0]
    ids = [p["product_id"] for p in feed["products"]]
    assert "p009" in ids and "p010" not in ids
    card = next(p for p in feed["products"] if p["product_id"] == "p009")
    assert card["variants"] == ["p010"] and feed["size"] == len(ids) == 11  # 12 dresses, one card for two
    line = json.loads(ctx.layout.feeds_jsonl.read_text().splitlines()[0])
    assert line["aliases"] == [] and any(p["variants"] == ["p010"] for p in line["products"])


@pytest.mark.slow
def test_feeds_stage_merges_a_repeating_topic_as_alias(tmp_path, spark):
    topics = [topic("dress", [("category", "dress")], judge=0.6),
              topic("dress-acme", [("category", "dress"), ("brand", "acme")], judge=0.9)]
    for t, support in zip(topics, (12, 11)):
        t["support"] = support
    ctx = make_run(tmp_path, pa.Table.from_pylist(topics, schema=TOPICS))
    from feedkit import synthetic_assignments
    from pinlanding.collections.schemas import ASSIGNMENTS

    extra = [{"product_id": p, "key": "brand", "value": "acme", "confidence": 1.0, "source": "extraction"}
             for p in read_table(ctx.layout.products, PRODUCTS)["product_id"].to_pylist()]
    base = synthetic_assignments(read_table(ctx.layout.products, PRODUCTS)).to_pylist()
    write_table(pa.Table.from_pylist(base + extra, schema=ASSIGNMENTS), ctx.layout.assignments, ASSIGNMENTS)
    counts = call_stage(run_feeds, *ctx)
    feeds = read_table(ctx.layout.feeds, FEEDS).to_pylist()
    assert [f["slug"] for f in feeds] == ["dress"] and feeds[0]["aliases"] == ["dress-acme"]
    dropped = read_table(ctx.layout.dir("feeds") / "dropped.parquet", FEEDS_DROPPED).to_pylist()
    assert [(d["slug"], d["reason"]) for d in dropped] == [("dress-acme", "duplicate_feed")]
    assert counts["dropped_by_reason"] == {"duplicate_feed": 1} and counts["aliases"] == 1


def test_image_digest_reads_bytes_and_tolerates_missing(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"same"), b.write_bytes(b"same")
    assert image_digest(str(a)) == image_digest(str(b)) and len(image_digest(str(a))) == 64
    assert image_digest(str(tmp_path / "none.jpg")) is None and image_digest(None) is None


@pytest.mark.slow
def test_diversify_interleaves_within_score_bands(spark):
    rows = [("t", "m0", 0.95, 1), ("t", "m1", 0.95, 2), ("t", "m2", 0.93, 3), ("t", "w1", 0.70, 4), ("t", "w2", 0.94, 5)]
    ranked = spark.createDataFrame(rows, "topic_id string, product_id string, score double, rank int")
    tattrs = spark.createDataFrame([("t", "category")], "topic_id string, key string")
    values = spark.createDataFrame([("m0", "gender", "men"), ("m1", "gender", "men"), ("m2", "gender", "men"),
                                    ("w1", "gender", "women"), ("w2", "gender", "women")],
                                   "product_id string, key string, value string")
    out = scoring.diversify(ranked, tattrs, values, max_products=5, band=0.1).toPandas().sort_values("rank")
    assert out.product_id.tolist() == ["m0", "w2", "m1", "m2", "w1"]  # w1 is 0.25 below the best: last
    unbanded = scoring.diversify(ranked, tattrs, values, max_products=5).toPandas().sort_values("rank")
    assert unbanded.product_id.tolist() == ["m0", "w1", "m1", "w2", "m2"]
