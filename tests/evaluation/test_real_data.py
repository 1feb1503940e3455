"""On the real Myntra dev split and Fashion12K queries: labels, mapping consistency, intent, baseline judging."""
import gzip
import json
from pathlib import Path

import pytest

from pinlanding.evaluation.baseline import build_baseline, product_texts
from pinlanding.collections.queries import read_queries
from pinlanding.evaluation.intent import Lexicon
from pinlanding.evaluation.judge import Judge, judge_collection
from pinlanding.evaluation.labels import read_labels
from pinlanding.evaluation.mapping import accepts

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
MYNTRA, QUERIES = DATA / "myntra", DATA / "search-queries" / "fashion12k_queries.tsv"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (MYNTRA / "styles.jsonl.gz").exists() or not QUERIES.exists(),
                                 reason="real datasets not present at ../shared/datasets")]


@pytest.fixture(scope="module")
def labels():
    return read_labels(MYNTRA)


def test_real_labels(labels):
    assert labels.n_records == 30718 and not labels.skipped
    assert all(pid.isdigit() for pid in labels.values["category"])
    assert {"tshirt", "shirt", "casual shoe", "watch", "dress"} <= labels.universe("category")
    assert {"navy blue", "black", "grey melange"} <= labels.universe("colour")
    assert labels.universe("gender") >= {"men", "women", "unisex", "boy", "girl", "kid"}
    for family in labels.values:  # every label value is judged a match for itself
        assert all(accepts(family, v, v) for v in labels.universe(family))


def test_real_queries_are_parsed():
    queries, skipped = read_queries(QUERIES)
    assert len(queries) >= 11_900 and sum(skipped.values()) < 100
    lex = Lexicon.build()
    parsed = sum(1 for q in queries[:2000] if lex.parse(q)[0])
    assert parsed / 2000 > 0.95


def test_real_baseline_judged(labels):
    ids, titles, tags = [], [], []
    with gzip.open(MYNTRA / "styles.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:  # inputs only: id, title and merchant tags
            r = json.loads(line)
            ids.append(str(r["id"]))
            titles.append(r.get("productDisplayName") or "")
            tags.append([t for t in (r.get("displayCategories") or "").split(",") if t])
    lex = Lexicon.build()
    judge = Judge(labels, ids, lexicon=lex)
    built = build_baseline(ids, product_texts(titles, tags), ["red dress for women", "black tshirt for men",
                                                               "blue jeans", "zzzz"], lex, k=10)
    res = {b.query: judge_collection(judge, sorted(b.intent), b.product_ids, b.scores, 10) for b in built}
    assert res["zzzz"]["reason"] == "no attributes"
    for q in ("red dress for women", "black tshirt for men", "blue jeans"):
        assert res[q]["judged"] and res[q]["precision"] >= 0.7, (q, res[q])
        assert res[q]["catalogue_matches"] >= 10
