"""Category values are product types; values whose precision cannot be established wait for review (issue 15)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pinlanding.collections.artifacts import read_json, read_table
from pinlanding.collections.config import load_config
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ATTRIBUTES, TOPICS, VOCAB, VOCAB_DROPPED, VOCAB_MERGES
from pinlanding.vocab.categories import CategoryRules, head_fragments
from pinlanding.vocab.clustering import normalize_value
from pinlanding.vocab.curate import run_vocab
from pinlanding.vocab.decisions import Decision, DecisionStore, decisions_path
from pinlanding.vocab.extract import run_extract

from .curate_fixtures import context, range_adder, write_queries, write_run, topics_over_curated
from .extract_fixtures import write_products

CATEGORIES = ["watch", "dial watch", "jacket", "winter jacket", "t-shirt", "tee", "tank top", "tank", "kurta",
              "churidar kurta", "skirt", "length skirt", "top", "sleeve top", "sling bag", "bag", "kidswear",
              "only macy's", "shoes", "reversible belt", "belt"]
OTHERS = {"season": {"winter"}, "gender": {"kid", "men"}, "brand": {"acme"}}


def _rules() -> CategoryRules:
    return CategoryRules({normalize_value(c) for c in CATEGORIES}, OTHERS)


@pytest.mark.parametrize("value, action, rule, target, extras", [
    ("Dial Watch", "merge", "head", "watch", ()),  # a part noun modifies the type
    ("Winter Jacket", "merge", "head", "jacket", (("season", "winter"),)),  # the modifier is kept as season
    ("Reversible Belt", "merge", "head", "belt", ()),  # an adjective modifies the type
    ("Men Shoes", "merge", "head", "shoe", (("gender", "men"),)),
    ("Tee", "merge", "synonym", "tshirt", ()),
    ("Tank", "merge", "synonym", "tanktop", ()),
    ("Churidar Kurta with Dupatta", "merge", "with", "churidarkurta", ()),
    ("Length Skirt", "merge", "fragment", "skirt", ()),
    ("Sleeve Top", "merge", "fragment", "top", ()),
    ("Neck Blouse", "drop", "fragment", None, ()),  # no "blouse" category to merge into
    ("Kidswear", "drop", "audience", None, (("gender", "kid"),)),
    ("Only Macy's", "drop", "name", None, ()),
    ("Acme", "drop", "name", None, ()),
    ("Knee Length Skirt", "merge", "head", "skirt", ()),  # a modifier phrase ends in a dangling word
    ("Sling Bag", "keep", "", None, ()),  # a noun-noun compound is its own type
    ("Watch", "keep", "", None, ()),
])
def test_category_rules(value, action, rule, target, extras) -> None:
    v = _rules().judge(value)
    assert (v.action, v.rule, v.target, v.extras) == (action, rule, target, extras)


def test_a_head_seen_only_inside_compounds_is_a_fragment() -> None:
    counts = {"flop": 50, "flipflop": 50, "bag": 60, "slingbag": 20}
    compounds = {"flop": ["flipflop"], "bag": ["slingbag"]}
    co = {("flipflop", "flop"): 50, ("bag", "slingbag"): 20}
    assert head_fragments(counts, compounds, co, floor=10) == {"flop": "flipflop"}  # bag has 40 of its own


def _category_rows() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    add = range_adder(rows)
    add(0, 10, "category", "Watch"); add(10, 20, "category", "Dial Watch"); add(10, 20, "category", "Watch")
    add(20, 30, "category", "Jacket"); add(30, 38, "category", "Winter Jacket"); add(30, 38, "category", "Jacket")
    add(38, 46, "category", "Flip Flops"); add(38, 46, "category", "Flops")
    add(46, 52, "category", "Kidswear"); add(52, 60, "category", "T-shirt"); add(56, 60, "category", "Tee")
    add(0, 30, "gender", "men"); add(30, 46, "gender", "women"); add(46, 50, "gender", "kids")
    add(20, 32, "season", "winter")  # stated for 12 of 60 products
    return rows


def _by_product(layout) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for r in read_table(layout.curated_attributes, ATTRIBUTES).to_pylist():
        out.setdefault(r["product_id"], set()).add((r["key"], r["value"]))
    return out


def test_vocab_stage_merges_compounds_records_them_and_a_split_undoes_it(tmp_path: Path) -> None:
    layout = write_run(tmp_path / "run", _category_rows(), 60)
    queries = write_queries(tmp_path / "q.tsv")
    call_stage(run_vocab, *context(layout, queries))
    vocab = {(r["key"], r["value"]) for r in read_table(layout.vocabulary, VOCAB).to_pylist()}
    cats = {v for k, v in vocab if k == "category"}
    assert cats == {"Watch", "Jacket", "Flip Flops", "T-shirt"}
    merges = {(m["variant"], m["canonical"], m["method"])
              for m in read_table(layout.dir("vocabulary") / "merges.parquet", VOCAB_MERGES).to_pylist()}
    assert {("Dial Watch", "Watch", "head"), ("Winter Jacket", "Jacket", "head"), ("Tee", "T-shirt", "synonym")} <= merges
    dropped = {(d["value"], d["reason"]) for d in
               read_table(layout.dir("vocabulary") / "dropped.parquet", VOCAB_DROPPED).to_pylist()}
    assert {("Flops", "fragment"), ("Kidswear", "audience")} <= dropped
    got = _by_product(layout)
    assert ("gender", "kids") in got["p50"] and not any(k == "category" for k, _ in got["p50"])  # moved to gender
    assert ("season", "winter") in got["p35"]  # the modifier of "Winter Jacket" is kept
    # the review undoes a structural merge with a split
    DecisionStore(decisions_path(layout)).append(Decision(action="split", who="t", key="category", value="Dial Watch"))
    call_stage(run_vocab, *context(layout, queries))
    assert ("category", "Dial Watch") in {(r["key"], r["value"]) for r in read_table(layout.vocabulary, VOCAB).to_pylist()}


def test_values_of_a_thinly_stated_key_wait_for_review_and_stay_out_of_topics(tmp_path: Path) -> None:
    rows = _category_rows()
    rows += [(f"p{i}", "pattern", "striped") for i in range(0, 30)]  # well stated: half the catalogue
    layout = write_run(tmp_path / "run", rows, 60)
    queries = write_queries(tmp_path / "q.tsv")
    ctx = context(layout, queries, **{"vocab.evidence.min_key_coverage": 0.25})
    call_stage(run_vocab, *ctx)
    vocab = {(r["key"], r["value"]): r for r in read_table(layout.vocabulary, VOCAB).to_pylist()}
    winter = vocab[("season", "winter")]
    assert winter["status"] == "needs_review" and winter["product_count"] == 18  # 12 + 6 from "Winter Jacket"
    assert "season for 20.0%" in json.loads(winter["provenance"])["review_reason"]
    assert vocab[("pattern", "striped")]["status"] == "pending"
    assert not any(k == "season" for s in _by_product(layout).values() for k, _ in s)
    report = read_json(layout.dir("vocabulary") / "report.json")
    assert [(h["key"], h["value"]) for h in report["needs_review"]] == [("season", "winter")]
    assert "Values held for review: 1" in (layout.dir("vocabulary") / "report.md").read_text()
    topics_over_curated(ctx)
    topics = read_table(layout.topics, TOPICS).to_pylist()
    assert topics and not any("winter" in t["query"] for t in topics)
    # a merchandiser's approval releases it into the curated attributes, hence into topics
    DecisionStore(decisions_path(layout)).append(Decision(action="approve", who="t", key="season", value="winter"))
    call_stage(run_vocab, *ctx)
    assert {r["value"]: r["status"] for r in read_table(layout.vocabulary, VOCAB).to_pylist()}["winter"] == "approved"
    assert ("season", "winter") in _by_product(layout)["p35"]
    topics_over_curated(ctx)
    assert any("winter" in t["query"] for t in read_table(layout.topics, TOPICS).to_pylist())


def test_value_mostly_from_neighbour_votes_waits_for_review(tmp_path: Path) -> None:
    layout = write_run(tmp_path / "run", _category_rows(), 60)
    call_stage(run_vocab, *context(layout, write_queries(tmp_path / "q.tsv")))
    assert all(r["status"] == "pending" for r in read_table(layout.vocabulary, VOCAB).to_pylist() if r["key"] != "season")
    rows = read_table(layout.attributes, ATTRIBUTES).to_pylist()
    for r in rows:
        if r["key"] == "category" and r["value"] == "Jacket":
            r["source"] = "neighbors"
    import pyarrow as pa

    from pinlanding.collections.artifacts import write_table
    write_table(pa.Table.from_pylist(rows, schema=ATTRIBUTES), layout.attributes, ATTRIBUTES)
    call_stage(run_vocab, *context(layout, write_queries(tmp_path / "q.tsv")))
    vocab = {(r["key"], r["value"]): r for r in read_table(layout.vocabulary, VOCAB).to_pylist()}
    assert vocab[("category", "Jacket")]["status"] == "needs_review"  # 18 products, 10 from votes only
    assert "only from neighbors" in json.loads(vocab[("category", "Jacket")]["provenance"])["review_reason"]


def _text_only(path: Path) -> list[dict]:
    """A generic JSONL catalogue of title and tags only (no description, no image), as a text-only shop has."""
    kinds = ["Knee Length Skirt", "Long Sleeve Top", "Churidar Kurta with Dupatta", "Dial Watch", "Watch",
             "Kidswear", "Tee", "T-Shirt"]
    lines = []
    for k, kind in enumerate(kinds):
        for j in range(12):
            lines.append({"id": f"{k}-{j}", "title": f"Acme Women Blue {kind} - Only Macy's",
                          "tags": ["Women", "Winter Wear" if j == 0 and k < 4 else "Sale"]})
    for j in range(6):
        lines.append({"id": f"m-{j}", "title": f"Acme Men Black {['Shirt', 'Top', 'Skirt'][j % 3]} Only Macy's",
                      "tags": ["Men"]})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return [{"product_id": x["id"], "title": x["title"], "merchant_tags": x["tags"], "brand": None}
            for x in (json.loads(line) for line in path.read_text().splitlines())]


def test_text_only_jsonl_catalogue_gives_product_types(tmp_path: Path) -> None:
    layout = write_products(tmp_path / "run", _text_only(tmp_path / "shop.jsonl"))
    cfg = load_config(overrides=["extract.engine=local", "extract.embedded.use_embeddings=false",
                                 "extract.batch_size=16", "vocab.min_products=3", "vocab.min_product_share=0.02",
                                 f"vocab.judge.queries={write_queries(tmp_path / 'q.tsv')}"])
    call_stage(run_extract, cfg, layout)
    call_stage(run_vocab, cfg, layout)
    vocab = {(r["key"], r["value"]): r for r in read_table(layout.vocabulary, VOCAB).to_pylist()}
    cats = {v.lower() for k, v in vocab if k == "category"}
    assert {"skirt", "top", "churidar kurta", "watch", "t-shirt"} <= cats
    assert not cats & {"only macy's", "macy's", "length skirt", "sleeve top", "dupatta", "dial watch", "kidswear", "tee"}
    assert {"knee length skirt", "long sleeve top"}.isdisjoint(cats)  # merged into their types
    assert vocab[("season", "winter")]["status"] == "needs_review"  # stated for 4 of 102 products


def test_review_app_shows_why_a_value_waits(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from pinlanding.vocab.review import create_app

    layout = write_run(tmp_path / "run", _category_rows(), 60)
    ctx = context(layout, write_queries(tmp_path / "q.tsv"), **{"vocab.evidence.min_key_coverage": 0.25})
    call_stage(run_vocab, *ctx)
    topics_over_curated(ctx)
    page = TestClient(create_app(layout)).get("/values", params={"key": "season"}).text
    assert "needs_review" in page and 'data-testid="review-reason"' in page and "season for 20.0%" in page
