"""Query -> collection matching (feeds/matching.py): parsing into the product and the rest, choosing, embedding
the words a parse leaves unexplained, confidence; and, on the real dev run when present, the labelled sample."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from feedkit import feed
from pinlanding.feeds.embedding import EmbeddingCache
from pinlanding.feeds.matching import CALIBRATION_PATH, FEATURES, Calibration, QueryMatcher

ROOT = Path(__file__).resolve().parents[2]
IDS = [f"p{i:03d}" for i in range(40)]
VOCAB = [{"key": "category", "value": "dress", "variants": ["gown"], "status": "pending"},
         {"key": "color", "value": "red", "variants": [], "status": "pending"},
         {"key": "brand", "value": "Acme", "variants": [], "status": "pending"}]


def feeds() -> list[dict]:
    return [feed("red-dress", IDS[:12], attrs=[("color", "red"), ("category", "dress")]),
            feed("dress", IDS[:20], attrs=[("category", "dress")]),
            feed("dress-for-women", IDS[:18], attrs=[("gender", "women"), ("category", "dress")]),
            feed("white-top", IDS[20:30], attrs=[("color", "white"), ("category", "top")]),
            feed("top", IDS[20:36], attrs=[("category", "top")]),
            feed("blue-shirt", IDS[10:16], attrs=[("color", "blue"), ("category", "shirts")]),
            feed("shoes", IDS[30:40], attrs=[("category", "shoes")]),
            feed("acme-shoes", IDS[30:35], attrs=[("brand", "Acme"), ("category", "shoes")])]


def fake_encoder(aliases: dict[str, str]):
    """Vectors from a hash of the text, except that an alias shares the vector of the text it stands for."""
    def encode(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), np.float32)
        for i, t in enumerate(texts):
            seed = int(hashlib.sha256(aliases.get(t, t).encode()).hexdigest()[:8], 16)
            out[i] = np.random.default_rng(seed).normal(size=64)
        return out / np.linalg.norm(out, axis=1, keepdims=True)
    return encode


@pytest.fixture()
def matcher() -> QueryMatcher:
    return QueryMatcher(feeds(), VOCAB)


def test_parse_finds_the_product_and_sets_other_items_aside(matcher):
    p = matcher.parse("White top on black down gown women sleeveless")
    assert p.categories == ["top"] and set(p.attrs) == {("colour", "white"), ("category", "top"), ("gender", "women")}
    assert {("colour", "black"), ("category", "dress"), ("sleeve", "sleeveless")} <= set(p.secondary)
    p = matcher.parse("jean shirt blue long sleeve")  # a noun before a noun is a modifier; jean means denim
    assert p.categories == ["shirt"] and ("material", "denim") in p.attrs
    p = matcher.parse("Black T-shirt with white collar")  # a detail's colour is not the product's
    assert ("colour", "black") in p.attrs and ("colour", "white") in p.secondary
    p = matcher.parse("Striped top in pink and white")  # "and" between colours is one item
    assert {("colour", "pink"), ("colour", "white")} <= set(p.attrs)
    p = matcher.parse("Blue jacket with short black leather skirt for ladies")  # who shops counts for the product
    assert p.categories == ["jacket"] and ("gender", "women") in p.attrs and ("colour", "black") in p.secondary
    p = matcher.parse("Ladies sleeveless grey wedding guest outfit with strap sandals")
    assert p.categories == []  # the product is named by no known noun: the sandals are worn with it
    p = matcher.parse("Women with Control Tummy Ponte Legging")
    assert p.categories == ["legging"]
    p = matcher.parse("blue pants, casual, cotton fabric, ideal for summer")
    assert p.categories == ["trouser"] and ("material", "cotton") in p.attrs and "fabric" not in p.words


def test_choice_exact_partial_broader_and_none(matcher):
    r = matcher.match("red gown")
    assert (r.match, matcher.feeds[r.best.index]["slug"], r.best.unmet) == ("exact", "red-dress", [])
    r = matcher.match("red dress for women")  # two collections cover two of three: colour weighs more
    assert (r.match, matcher.feeds[r.best.index]["slug"], r.best.unmet) == ("partial", "red-dress", [("gender", "women")])
    r = matcher.match("navy blue shirt")
    assert matcher.feeds[r.best.index]["slug"] == "blue-shirt" and r.best.matched[1]["via"] == "broader" \
        and r.match == "partial"
    r = matcher.match("sneakers")  # a broader product type serves
    assert matcher.feeds[r.best.index]["slug"] == "shoes" and r.match == "partial"
    r = matcher.match("acme sneakers")
    assert matcher.feeds[r.best.index]["slug"] == "acme-shoes"
    r = matcher.match("green top", k=5)  # never a collection that narrows on something not asked
    assert [matcher.feeds[c.index]["slug"] for c in r.candidates] == ["top"]
    for q in ("qwzx blorp", "black coat", "red", ""):
        assert matcher.match(q).match == "none" and matcher.match(q).best is None


def test_batch_equals_single_queries(matcher):
    qs = ["red gown", "navy blue shirt", "qwzx", "white top with red dress", "red gown"]
    batch = matcher.match_many(qs, k=3)
    for q, b in zip(qs, batch):
        s = matcher.match(q, k=3)
        assert (b.match, b.confidence, [c.index for c in b.candidates]) == (s.match, s.confidence,
                                                                            [c.index for c in s.candidates])


def test_embedding_explains_only_unexplained_words():
    calls: list[list[str]] = []
    encode = fake_encoder({"frockish": "dress", "crimsonish": "red"})

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return encode(texts)

    m = QueryMatcher(feeds(), VOCAB, EmbeddingCache(counting), embed_scope="unnamed_product")
    m.warm()
    targets = len(calls)
    r = m.match("frockish in red")  # no product type parsed: the embedding names it
    assert m.feeds[r.best.index]["slug"] == "red-dress" and r.parsed.embedded == {
        "frockish": {"key": "category", "value": "dress", "similarity": 1.0}}
    assert r.best.features["embedded_category"] == 1.0 and {"key": "category", "value": "dress",
                                                            "collection_value": "dress", "via": "embedding"} in r.best.matched
    assert calls[targets:] == [["frockish"]]  # only the leftover word was encoded, once
    m.match("frockish in red")
    assert len(calls) == targets + 1  # cached
    r = m.match("crimsonish dress")  # a product type was parsed: unnamed_product scope leaves the rest alone
    assert r.parsed.embedded == {} and r.parsed.unexplained == ["crimsonish"]
    m.embed_scope = "all"
    r = m.match("crimsonish dress")
    assert m.feeds[r.best.index]["slug"] == "red-dress" and r.parsed.embedded["crimsonish"]["value"] == "red"
    assert QueryMatcher(feeds(), VOCAB).match("frockish").match == "none"  # parse only: unexplained


def test_confidence_is_the_fitted_calibration():
    cal = Calibration.load()
    assert CALIBRATION_PATH.exists() and "dev-split" in cal.source and set(cal.coef) == set(FEATURES)
    base = {f: 0.0 for f in FEATURES} | {"coverage": 1.0}
    assert 0.0 < cal(base | {"unexplained": 6.0}) < cal(base) < 1.0  # unexplained words lower it
    assert Calibration(none_below=0.99).none_below == 0.99


def test_labelled_sample_file_is_well_formed():
    import csv

    with open(ROOT / "evaluation" / "data" / "query_labels.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\"))
    real = [r for r in rows if r["split"] in ("dev", "test")]
    assert len(real) >= 200 and len({r["line"] for r in real}) == len(real)
    assert {r["split"] for r in rows} == {"dev", "test", "nonsense"}
    assert all(r["right"] for r in rows) and all(r["right"] == "-" for r in rows if r["split"] == "nonsense")
    assert (ROOT / "evaluation" / "data" / "README.md").exists()


@pytest.mark.slow
def test_labelled_sample_accuracy_on_the_dev_run():
    run = ROOT / "runs" / "dev"
    if not (run / "feeds" / "feeds.parquet").exists():
        pytest.skip(f"the labelled sample's run is not at {run} (copy the dev run there)")
    spec = importlib.util.spec_from_file_location("eval_query_mapping", ROOT / "benchmarks" / "eval_query_mapping.py")
    ev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ev)
    report, _ = ev.evaluate(ev.read_labels(ROOT / "evaluation" / "data" / "query_labels.tsv"),
                            ev.build_matcher(run, embed=False))
    assert report["splits"]["fashion12k"]["acceptable_share"] >= 0.85
    assert report["splits"]["test"]["acceptable_share"] >= 0.85
    assert report["splits"]["nonsense"]["answers"]["none"] == report["splits"]["nonsense"]["queries"]
