"""Search-intent parsing, head/tail, per-key demand and coverage on hand-built logs."""
import pytest

from pinlanding.collections.queries import read_queries
from pinlanding.evaluation.intent import Coverage, Lexicon, analyze, intent_label


def test_parse_general_lexicon():
    lex = Lexicon.build()
    intent, rest = lex.parse("red long slive dress for women")
    assert intent == {("category", "dress"), ("colour", "red"), ("gender", "women")}
    assert rest == ["long", "slive"]  # typos and unknown words are left over, stop words dropped
    assert lex.parse("Short sleeve T-Shirts for Men")[0] == {("sleeve", "short sleeve"), ("category", "tshirt"),
                                                            ("gender", "men")}
    assert lex.parse("")[0] == frozenset()
    assert lex.parse("<script>alert(1)</script> 🎉")[0] == frozenset()


def test_vocabulary_extends_the_lexicon_and_rejected_rows_do_not():
    vocab = [{"key": "brand", "value": "Flying Machine", "variants": ["flyingmachine"], "status": "approved"},
             {"key": "style", "value": "boho", "status": "approved"},
             {"key": "style", "value": "grunge", "status": "rejected"}]
    lex = Lexicon.build(vocab)
    assert lex.parse("flying machine boho jeans")[0] == {("brand", "flyingmachine"), ("style", "boho"),
                                                         ("category", "jean")}
    assert lex.parse("flyingmachine shirt")[0] == {("brand", "flyingmachine"), ("category", "shirt")}
    assert lex.parse("grunge shirt")[0] == {("category", "shirt")}


def test_coverage_statuses_and_key_table():
    lex = Lexicon.build()
    cov = Coverage.build([("red-dresses", [("category", "dress"), ("colour", "red")], 50),
                          ("tiny-blue-dresses", [("category", "dress"), ("colour", "blue")], 3),
                          ("dresses", [("category", "dress")], 500)])
    queries = ["red dress", "red dress", "red dresses", "blue dress", "green dress for women", "jeans", "hello"]
    res = analyze(queries, lex, cov, head_share=0.5, thin_size=20)
    status = {q["query"]: q["status"] for q in res["queries"]}
    assert status == {"red dress": "covered", "red dresses": "covered", "blue dress": "thin",
                      "green dress for women": "partial", "jeans": "uncovered", "hello": "unparsed"}
    s = res["summary"]
    assert (s["queries"], s["parsed_queries"], s["distinct_intents"]) == (7, 6, 4)
    # intents by count: red dress 3, then three singletons; half of 6 parsed queries = the head intent alone
    assert (s["head_intents"], s["tail_intents"], s["tail_query_share"]) == (1, 3, 0.5)
    assert s["singleton_intent_share"] == 0.5
    assert s["covered_share"] == pytest.approx(4 / 7, abs=1e-4)
    keys = {k["key"]: k for k in res["keys"]}
    assert keys["category"]["queries"] == 6 and keys["category"]["covered"] == 5
    assert keys["colour"] == {"key": "colour", "queries": 5, "demand_share": round(5 / 6, 4), "distinct_values": 3,
                              "covered": 4, "coverage": 0.8, "exactly_covered": 4}
    assert keys["gender"]["covered"] == 0
    assert res["uncovered_intents"][0]["intent"] in {"category=jean", "category=dress; colour=green; gender=women"}
    assert intent_label(frozenset({("colour", "red"), ("category", "dress")})) == "category=dress; colour=red"


def test_read_queries_skips_bad_rows(queries_path):
    queries, skipped = read_queries(queries_path)
    assert len(queries) == 7 and queries[0] == "red tshirt for men"
    assert skipped == {"missing column": 1, "empty query": 1}
    with pytest.raises(ValueError, match="no column"):
        read_queries(queries_path, column="French query")
