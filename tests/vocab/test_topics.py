"""Candidate topics: counting, phrasing, redundancy, the judge, review decisions, the stage on a tiny run."""
from __future__ import annotations

import json

import pytest

from curate_fixtures import context, tiny_attributes, write_queries, write_run, topics_over_curated

from pinlanding.collections.artifacts import read_json, read_table
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import TOPICS
from pinlanding.vocab.config import TopicsConfig
from pinlanding.vocab.curate import run_vocab
from pinlanding.vocab.decisions import Decision, DecisionStore, decisions_path
from pinlanding.vocab.topics import count_tuples, phrase, slugify, title_of, topic_id


def test_count_tuples_counts_frequent_values_with_distinct_keys():
    products = {
        "a": {("category", "dress"), ("color", "red"), ("color", "pink")},
        "b": {("category", "dress"), ("color", "red")},
        "c": {("category", "dress"), ("color", "blue")},
    }
    support = count_tuples(products, min_support=2, max_arity=3)
    assert support[(("category", "dress"),)] == 3
    assert support[(("category", "dress"), ("color", "red"))] == 2
    assert (("color", "pink"),) not in support and (("color", "pink"), ("color", "red")) not in support
    assert all(len({k for k, _ in t}) == len(t) for t in support)


def test_topic_id_is_stable_and_order_free():
    a = (("category", "dress"), ("color", "red"))
    assert topic_id(a) == topic_id(tuple(reversed(a))) and len(topic_id(a)) == 16
    assert topic_id(a) != topic_id((("category", "dress"),))


def test_phrase_title_and_slug():
    cfg = TopicsConfig()
    attrs = (("category", "Dress"), ("color", "Red"), ("gender", "Women"), ("occasion", "Party"))
    assert phrase(attrs, cfg) == "red party dress for women"  # query_order: colour before occasion, as titles read
    assert title_of("party red dress for women") == "Party Red Dress for Women"
    assert phrase((("category", "Dress"), ("neckline_shape", "V Neck")), cfg) == "v neck dress"  # unknown key: modifier
    assert slugify("Party Red Dress for Women") == "party-red-dress-for-women"
    assert slugify("कुर्ता 🙂") == "topic" and slugify("<script>alert(1)</script>") == "script-alert-1-script"
    assert slugify("Crème Brûlée Top") == "creme-brulee-top"


@pytest.fixture
def curated_run(tmp_path):
    layout = write_run(tmp_path / "run", tiny_attributes(), 60)
    queries = write_queries(tmp_path / "queries.tsv")
    call_stage(run_vocab, *context(layout, queries))
    return layout, queries


def _topics(layout):
    return {tuple((a["key"], a["value"]) for a in t["attributes"]): t
            for t in read_table(layout.topics, TOPICS).to_pylist()}


def test_run_topics_generates_judges_and_explains(curated_run):
    layout, queries = curated_run
    counts = topics_over_curated(context(layout, queries, **{"vocab.judge.keep_threshold": 0.8}))
    topics = _topics(layout)
    assert counts["candidates"] == len(topics) > 0 and counts["kept"] > 0
    # every topic names a category (the anchor), has enough support and a reason
    assert all(any(k == "category" for k, _ in attrs) for attrs in topics)
    assert all(t["support"] >= 3 and t["reason"] and t["status"] in ("kept", "rejected") for t in topics.values())
    tee = topics[(("category", "T-Shirt"), ("color", "Black"))]
    assert tee["query"] == "black t-shirt" and tee["title"] == "Black T-Shirt"
    assert tee["status"] == "kept" and "not an LLM" in tee["reason"]
    # T-shirts are all men's here: "t-shirt for men" has exactly the products of "t-shirt"
    redundant = topics[(("category", "T-Shirt"), ("gender", "Men"))]
    assert redundant["status"] == "rejected" and redundant["reason"].startswith("redundant")
    # well-phrased, coherent topics outrank odd ones; low scores are rejected with the judge's words
    judged = [t for t in topics.values() if t["judge_score"] is not None]
    low = [t for t in judged if t["status"] == "rejected"]
    assert low and all("< 0.8" in t["reason"] and t["judge_score"] < 0.8 for t in low)
    assert all(t["judge_score"] >= 0.8 for t in judged if t["status"] == "kept")
    unattested = topics[(("category", "T-Shirt"), ("material", "कपास"))]
    assert unattested["judge_score"] < tee["judge_score"] and "never name material=कपास" in unattested["reason"]
    assert len({t["slug"] for t in topics.values()}) == len(topics)
    report = read_json(layout.dir("topics") / "report.json")
    assert report["kept"] == counts["kept"] and report["judge"] == "cooccurrence"
    assert "not a language model" in (layout.dir("topics") / "report.md").read_text()
    # judgements are cached: a second run asks the judge about nothing
    assert topics_over_curated(context(layout, queries, **{"vocab.judge.keep_threshold": 0.8}))["judge_cache_hits"] == len(judged)


def test_reviewers_accept_and_reject_topics(curated_run):
    layout, queries = curated_run
    topics_over_curated(context(layout, queries, **{"vocab.judge.keep_threshold": 0.8}))
    topics = _topics(layout)
    victim = next(t for t in topics.values() if t["status"] == "kept")
    rescued = next(t for t in topics.values() if t["status"] == "rejected" and t["judge_score"] is not None)
    store = DecisionStore(decisions_path(layout))
    for t, action in ((victim, "reject_topic"), (rescued, "accept")):
        target = json.dumps([[a["key"], a["value"]] for a in t["attributes"]])
        store.append(Decision(action=action, who="merch", topic_id=t["topic_id"], value=t["title"], target=target))
    topics_over_curated(context(layout, queries, **{"vocab.judge.keep_threshold": 0.8}))
    after = {t["topic_id"]: t for t in read_table(layout.topics, TOPICS).to_pylist()}
    assert after[victim["topic_id"]]["status"] == "rejected" and "rejected in review by merch" in after[victim["topic_id"]]["reason"]
    assert after[rescued["topic_id"]]["status"] == "kept" and "accepted in review by merch" in after[rescued["topic_id"]]["reason"]


def test_accepted_topic_below_min_support_is_kept(curated_run):
    layout, queries = curated_run
    attrs = [["category", "Dress"], ["color", "Red"]]  # no product has both: dropped
    rare = [["category", "Sports Shoes"], ["gender", "Women"]]  # on 11 products, below the floor of 20
    tid = topic_id(tuple(map(tuple, rare)))
    store = DecisionStore(decisions_path(layout))
    store.append(Decision(action="accept", who="merch", topic_id=topic_id(tuple(map(tuple, attrs))), target=json.dumps(attrs)))
    store.append(Decision(action="accept", who="merch", topic_id=tid, target=json.dumps(rare)))
    topics_over_curated(context(layout, queries, **{"topics.min_support": 20}))
    topics = {t["topic_id"]: t for t in read_table(layout.topics, TOPICS).to_pylist()}
    assert topics[tid]["status"] == "kept" and topics[tid]["support"] == 11  # with the attached "Sport Shoes"
    assert topic_id(tuple(map(tuple, attrs))) not in topics


def test_llm_judge_errors_reject_with_reason(curated_run, monkeypatch):
    layout, queries = curated_run
    import httpx

    from pinlanding.llm.openai_chat import OpenAIChat

    real = OpenAIChat.__init__

    def init(self, **kw):
        real(self, base_url="http://judge.local/v1", model="judge", max_retries=0,
             transport=httpx.MockTransport(lambda r: httpx.Response(200, text="garbage")))

    monkeypatch.setattr(OpenAIChat, "__init__", init)
    topics_over_curated(context(layout, queries, **{"vocab.judge.backend": "openai"}))
    topics = read_table(layout.topics, TOPICS).to_pylist()
    judged = [t for t in topics if not t["reason"].startswith("redundant")]
    assert judged and all(t["status"] == "rejected" and t["reason"].startswith("judge error") for t in judged)


# --- titles a shopper would type, support counted as feeds are built (issue 15) ---

import pyarrow as pa  # noqa: E402

from pinlanding.collections.artifacts import write_table  # noqa: E402
from pinlanding.collections.config import load_config  # noqa: E402
from pinlanding.collections.schemas import ASSIGNMENTS, ATTRIBUTES, PRODUCTS  # noqa: E402
from pinlanding.vocab.topics import (brand_spellings, count_parts, repeated_words, shown_attributes,  # noqa: E402
                                     topic_title)


def _shipped_topics_config() -> TopicsConfig:
    """The topics settings of conf/default.yaml, the order titles are published in."""
    return load_config().topics


def test_title_leaves_out_a_modifier_the_category_already_names():
    cfg = _shipped_topics_config()
    attrs = (("category", "casual shoes"), ("gender", "men"), ("occasion", "casual"))
    assert phrase(attrs, cfg) == "casual shoes for men"
    assert topic_title(attrs, cfg) == "Casual Shoes for Men"
    sports = (("category", "sports shoes"), ("color", "white"), ("occasion", "sports"))
    assert topic_title(sports, cfg) == "White Sports Shoes"
    assert [k for k, _ in shown_attributes(sports, cfg)] == ["color", "category"]
    # a value that only shares a word with the noun is not left out: it is a repeat, reported as such
    assert phrase((("category", "tote bag"), ("brand", "be for bag")), cfg) == "be for bag tote bag"
    assert repeated_words((("category", "tote bag"), ("brand", "be for bag")), cfg) == ["bag"]


def test_title_order_is_colour_material_modifiers_category_gender():
    cfg = _shipped_topics_config()
    attrs = (("occasion", "casual"), ("gender", "women"), ("category", "top"), ("material", "cotton"),
             ("color", "blue"))
    assert topic_title(attrs, cfg) == "Blue Cotton Casual Top for Women"
    assert topic_title((("pattern", "printed"), ("color", "red"), ("category", "t-shirt")), cfg) == "Red Printed T-shirt"
    assert topic_title((("brand", "nike"), ("color", "black"), ("category", "shoes")), cfg) == "Nike Black Shoes"


def test_a_part_value_names_its_part_once():
    cfg = _shipped_topics_config()
    shirt = (("category", "t-shirt"), ("color", "navy blue"), ("sleeve", "short"), ("gender", "men"))
    assert topic_title(shirt, cfg) == "Navy Blue Short Sleeve T-shirt for Men"
    assert phrase((("category", "t-shirt"), ("neck", "round")), cfg) == "round neck t-shirt"
    # a value that already names a part keeps its own words: no "polo collar neck", no "sleeveless sleeve"
    assert phrase((("category", "t-shirt"), ("neck", "polo collar")), cfg) == "polo collar t-shirt"
    assert phrase((("category", "top"), ("sleeve", "sleeveless")), cfg) == "sleeveless top"
    assert phrase((("category", "dress"), ("neck", "V-Neck")), cfg) == "v-neck dress"
    # the part-noun lexicon is configuration: without it the template applies to every value
    bare = cfg.model_copy(update={"part_nouns": []})
    assert phrase((("category", "t-shirt"), ("neck", "polo collar")), bare) == "polo collar neck t-shirt"
    plain = cfg.model_copy(update={"phrase_templates": {"gender": "for {value}"}})
    assert phrase((("category", "t-shirt"), ("sleeve", "short")), plain) == "short t-shirt"


def test_repeated_words_across_values_but_not_inside_a_brand_name():
    cfg = _shipped_topics_config()
    assert repeated_words((("brand", "u.s. polo assn"), ("neck", "polo collar"), ("category", "t-shirt")), cfg) == ["polo"]
    assert repeated_words((("brand", "peri peri"), ("category", "bra")), cfg) == []  # the brand's own spelling
    # the templates' own words count too: "Scullers for Her Shirt for Men" says "for" twice
    assert repeated_words((("brand", "scullers for her"), ("category", "shirt"), ("gender", "men")), cfg) == ["for"]
    assert repeated_words((("brand", "scullers for her"), ("category", "shirt")), cfg) == []
    assert repeated_words((("category", "shirt"), ("color", "blue"), ("gender", "men")), cfg) == []
    # a colour inside a brand name is left out, so the title is the brand's, not a stutter
    assert phrase((("brand", "red tape"), ("color", "red"), ("category", "shoes")), cfg) == "red tape shoes"


def test_brand_casing_comes_from_the_catalogue():
    spellings = brand_spellings(["Q&Q", "Q&Q", "q&q", "U.S. Polo Assn.", None, " ", "ADIDAS", "ADIDAS", "Adidas"])
    cfg = _shipped_topics_config()
    assert topic_title((("brand", "q&q"), ("color", "blue"), ("category", "watch")), cfg, spellings) == "Q&Q Blue Watch"
    assert topic_title((("brand", "u.s. polo assn"), ("category", "shirt")), cfg, spellings) == "U.S. Polo Assn. Shirt"
    assert topic_title((("brand", "adidas"), ("category", "shoes"), ("gender", "men")), cfg, spellings) == \
        "ADIDAS Shoes for Men"  # the catalogue's most frequent spelling
    assert topic_title((("brand", "q&q"), ("category", "watch")), cfg) == "Q&q Watch"  # no catalogue: capitalized


def test_support_counts_only_attributes_feeds_would_match(tmp_path):
    rows = [{"product_id": f"p{i}", "key": "category", "value": "dress", "source": "title", "confidence": 0.95}
            for i in range(6)]
    rows += [{"product_id": f"p{i}", "key": "color", "value": "red", "source": "image",
              "confidence": 0.9 if i < 2 else 0.5} for i in range(6)]
    rows.append({"product_id": "p0", "key": "gender", "value": "women", "source": "x", "confidence": None})
    path = tmp_path / "assignments.parquet"
    write_table(pa.Table.from_pylist(rows, schema=ASSIGNMENTS), path, ASSIGNMENTS)
    names = ["part-00000"]
    everything = count_parts(path, names, min_support=1, max_arity=2, accepted=[])
    confident = count_parts(path, names, min_support=1, max_arity=2, accepted=[], min_confidence=0.7)
    pair = (("category", "dress"), ("color", "red"))
    assert everything.support[pair] == 6 and confident.support[pair] == 2
    assert confident.support[(("gender", "women"),)] == 1  # no confidence reads as 1.0, as in the feeds stage


def test_run_topics_rejects_stutters_and_titles_already_taken(tmp_path):
    layout = write_run(tmp_path / "run", [], 40)
    rows = []
    for i in range(40):
        rows.append((f"p{i}", "category", "casual shoes"))
        if i < 30:
            rows.append((f"p{i}", "occasion", "casual"))
        if i < 20:
            rows += [(f"p{i}", "brand", "red tape"), (f"p{i}", "color", "red" if i < 12 else "white")]
    curated = [{"product_id": p, "key": k, "value": v, "source": "title", "confidence": 0.9, "raw": v} for p, k, v in rows]
    write_table(pa.Table.from_pylist(curated, schema=ATTRIBUTES), layout.curated_attributes, ATTRIBUTES)
    ctx = context(layout, write_queries(tmp_path / "q.tsv"), **{"topics.min_support": 10})
    topics_over_curated(ctx)
    topics = _topics(layout)
    casual = topics[(("category", "casual shoes"), ("occasion", "casual"))]
    assert casual["status"] == "rejected" and casual["reason"].startswith("same title: 'casual shoes'")
    red = topics[(("brand", "red tape"), ("category", "casual shoes"), ("color", "red"))]
    assert red["status"] == "rejected" and red["title"] == "Red Tape Casual Shoes"
    kept_titles = [t["title"] for t in topics.values() if t["status"] == "kept"]
    assert kept_titles and all(len(set(t.lower().split())) == len(t.split()) for t in kept_titles)


def test_support_counts_near_identical_products_once(tmp_path):
    rows = [{"product_id": f"p{i}", "key": "category", "value": "watch", "source": "title", "confidence": 0.9}
            for i in range(5)]
    products = pa.Table.from_pylist(
        [{"product_id": f"p{i}", "title": t, "brand": b, "content_hash": str(i)} for i, (t, b) in enumerate([
            ("Q&Q Men Black Dial Watch", "Q&Q"), ("q&q men black dial-watch", "Q&Q"), ("Q&Q Men Black Dial Watch", "Titan"),
            ("Q&Q Men White Dial Watch", "Q&Q"), ("Q&Q Men Black Dial Watch", "Q&Q")])], schema=PRODUCTS)
    write_table(products, tmp_path / "products.parquet", PRODUCTS)
    write_table(pa.Table.from_pylist(rows, schema=ASSIGNMENTS), tmp_path / "assignments.parquet", ASSIGNMENTS)
    counts = count_parts(tmp_path / "assignments.parquet", ["part-00000"], min_support=1, max_arity=1, accepted=[],
                         products=tmp_path / "products.parquet")
    assert counts.support[(("category", "watch"),)] == 3  # p0, p1, p4 are one card; another brand or title is not
    assert count_parts(tmp_path / "assignments.parquet", ["part-00000"], min_support=1, max_arity=1,
                       accepted=[]).support[(("category", "watch"),)] == 5


def test_the_report_names_values_whose_evidence_is_too_weak_for_a_topic(tmp_path):
    layout = write_run(tmp_path / "run", [], 24)
    rows = [(f"p{i}", "category", "dress", 0.9) for i in range(24)]
    rows += [(f"p{i}", "material", "silk", 0.6) for i in range(12)]  # named only where the feeds will not look
    rows += [(f"p{i}", "material", "cotton", 0.9) for i in range(12, 24)]
    curated = [{"product_id": p, "key": k, "value": v, "source": "description", "confidence": c, "raw": v}
               for p, k, v, c in rows]
    write_table(pa.Table.from_pylist(curated, schema=ATTRIBUTES), layout.curated_attributes, ATTRIBUTES)
    topics_over_curated(context(layout, write_queries(tmp_path / "q.tsv"), **{"topics.min_support": 10}))
    report = read_json(layout.dir("topics") / "report.json")
    assert report["held_out"] == [{"key": "material", "value": "silk", "products": 12, "confident": 0}]
    assert not any(("material", "silk") in {(a["key"], a["value"]) for a in t["attributes"]}
                   for t in read_table(layout.topics, TOPICS).to_pylist())
    assert "| material | silk | 12 | 0 |" in (layout.dir("topics") / "report.md").read_text()


def test_a_tuple_carrying_most_of_a_shorter_ones_products_is_redundant(tmp_path):
    layout = write_run(tmp_path / "run", [], 50)
    rows = []
    for i in range(50):
        rows.append((f"p{i}", "category", "kurta"))
        if i < 45:
            rows.append((f"p{i}", "gender", "women"))  # 90% of the kurtas: "kurta for women" repeats "kurta"
        if 15 <= i < 45:
            rows.append((f"p{i}", "color", "red"))  # 60%: a page of its own; all of them women's
    curated = [{"product_id": p, "key": k, "value": v, "source": "title", "confidence": 0.9, "raw": v} for p, k, v in rows]
    write_table(pa.Table.from_pylist(curated, schema=ATTRIBUTES), layout.curated_attributes, ATTRIBUTES)
    queries = write_queries(tmp_path / "q.tsv")
    topics_over_curated(context(layout, queries, **{"topics.min_support": 10, "vocab.judge.keep_threshold": 0.0,
                                                    "topics.redundant_share": 0.8}))
    topics = _topics(layout)
    women = topics[(("category", "kurta"), ("gender", "women"))]
    assert women["status"] == "rejected" and women["reason"] == "redundant: 45 products, 90% of the 50 of 'kurta'"
    red = topics[(("category", "kurta"), ("color", "red"))]
    assert red["status"] == "kept"
    # measured against the red kurtas, still a page, not against the rejected "kurta for women"
    red_women = topics[(("category", "kurta"), ("color", "red"), ("gender", "women"))]
    assert red_women["status"] == "rejected" and red_women["reason"] == "redundant: the same 30 products as 'red kurta'"
    topics_over_curated(context(layout, queries, **{"topics.min_support": 10, "vocab.judge.keep_threshold": 0.0,
                                                    "topics.redundant_share": 0.0}))
    assert all(t["status"] == "kept" for t in _topics(layout).values())
