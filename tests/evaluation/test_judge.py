"""Judging single attributes and collections: decomposition, unknown products, ties, catalogue matches."""
import pytest

from pinlanding.evaluation.intent import Lexicon
from pinlanding.evaluation.judge import Judge, judge_collection, unjudgeable
from pinlanding.evaluation.labels import read_labels

from .conftest import CATALOGUE


@pytest.fixture()
def judge(labels_path):
    return Judge(read_labels(labels_path), list(CATALOGUE), lexicon=Lexicon.build())


def test_attribute_arrays(judge):
    match, has = judge.attribute("colour", "blue")  # blue accepts navy blue (3), blue (5, 7)
    assert [p for p, m in zip(CATALOGUE, match) if m] == ["3", "5", "7"]
    match, has = judge.attribute("pattern", "striped")
    assert [p for p, h in zip(CATALOGUE, has) if h] == ["1", "2", "3", "7"]
    assert judge.attribute("colour", "ultraviolet") is None
    assert judge.attribute("style", "boho") is None


def test_compound_values_are_decomposed(judge):
    assert judge.parts("category", "printed t shirt") is None  # "printed" has no label value in this catalogue
    assert judge.parts("category", "red tshirt") == [("category", "tshirt"), ("colour", "red")]
    match, _ = judge.attribute("category", "red tshirt")
    assert [p for p, m in zip(CATALOGUE, match) if m] == ["1", "2"]
    assert judge.parts("category", "jersey") is None  # parsed as a material only: not its own family
    assert Judge(judge.labels, list(CATALOGUE)).parts("category", "red tshirt") is None  # no lexicon, no decomposition


def test_collection_with_ties_and_unknown_products(judge):
    # 1 and 3 tie; 3 is navy: expected precision over both orders of the tie at k=1 is 1/2
    res = judge_collection(judge, [("colour", "red")], ["1", "3", "99"], [0.5, 0.5, 0.1], k=1)
    assert res["precision"] == pytest.approx(0.5) and res["judged"]
    res = judge_collection(judge, [("colour", "red"), ("category", "tshirt")], ["99", "3", "1"], None, k=2)
    assert res["precision"] == 0.5 and res["precision_strict"] == 0.0  # 99 has no labels: left out / a miss
    assert res["catalogue_matches"] == 2 and res["judged_products"] == 1
    assert unjudgeable(judge, []) == "no attributes"
    empty = judge_collection(judge, [("style", "boho")], [], None, k=10)
    assert empty["reason"] == "key 'style' has no label family" and not empty["judged"]
