"""The report stage and `pinlanding evaluate` end to end on the synthetic run (hand-computed figures)."""
import csv
import json
import math
import shutil

import pytest
from typer.testing import CliRunner

from pinlanding.collections.cli import app
from pinlanding.collections.pipeline import call_stage
from pinlanding.evaluation.evaluate import run_evaluate
from pinlanding.evaluation.report import run_report


def test_report_stage_writes_label_free_report(run, cfg):
    counts = call_stage(run_report, cfg, run)
    out = run.root / "report"
    report = json.loads((out / "report.json").read_text())
    assert counts["products"] == 7 and counts["collections"] == 5 and counts["queries"] == 7
    assert report["feeds"]["unique_topics"] == 5
    assert report["feeds"]["products_covered"] == 6  # 1-5 and 7; 6 is in no feed
    assert report["feeds"]["unknown_products"] == 1  # 99 is not in the catalogue
    ex = report["extraction"]
    assert ex["rows"] == 14 and ex["per_product"]["mean"] == 2.0 and ex["per_product"]["products_without"] == 0
    assert ex["keys"]["color"]["distinct_values"] == 2 and ex["keys"]["color"]["top_values"][0] == {
        "value": "red", "products": 4}
    # the queries add a gender (or lack a colour) to what the feeds hold: partial; two have nothing
    assert report["search"]["summary"]["status"] == {"partial": 4, "uncovered": 2, "unparsed": 1}
    demand = list(csv.DictReader((out / "demand.csv").open()))
    assert {r["key"] for r in demand} >= {"category", "colour", "gender"}
    uncovered = (out / "uncovered_queries.csv").read_text()
    assert "green jumpsuit" in uncovered and "zzz qqq" in uncovered
    html = (out / "index.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "data:image/png;base64," in html and "data:image/jpeg;base64," in html
    assert "label" not in json.dumps(report["inputs"])  # reads pipeline artifacts only


def test_report_without_queries_feeds_or_assignments(run, cfg, tmp_path):
    (run.feeds).unlink()
    shutil.rmtree(run.assignments) if run.assignments.is_dir() else run.assignments.unlink()
    cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"queries": str(tmp_path / "x")})})
    counts = call_stage(run_report, cfg, run)
    assert counts["collections"] == 0 and counts["queries"] == 0
    html = (run.root / "report" / "index.html").read_text()
    assert "No search log" in html
    assert "assignments: 0 attribute rows" in html and "n/a</div><div class=\"l\">attributes per product" in html


def test_evaluate_hand_computed(run, cfg, labels_path):
    m = run_evaluate(cfg, run, labels_path)
    c = m["collections"]
    assert (c["collections"], c["judged"], c["not_judged"]) == (5, 3, 2)
    assert c["not_judged_reasons"] == {"key 'style' has no label family": 1, "empty feed": 1}
    assert c["precision"] == pytest.approx(round((2 / 3 + 1 / 2 + 1 / 2) / 3, 4))
    # strict: unlabelled products count as misses: 2/3, 1/3, 1/3
    assert c["precision_strict"] == pytest.approx(round((2 / 3 + 1 / 3 + 1 / 3) / 3, 4))
    assert c["families"]["colour"] == {"precision": pytest.approx(round((2 / 3 + 1 / 2) / 2, 4)), "collections": 2}
    assert c["families"]["category"]["precision"] == 1.0
    assert c["families"]["pattern"] == {"precision": 0.5, "collections": 1}
    rows = [json.loads(line) for line in (run.root / "report" / "collections.jsonl").read_text().splitlines()]
    red = next(r for r in rows if r["slug"] == "red-tshirts")
    # gains are the share of attributes matched; the ideal is the catalogue's best: 1, 2 full, 3, 4, 7 half
    d = [1 / math.log2(r + 1) for r in range(1, 6)]
    assert red["ndcg"] == pytest.approx((d[0] + d[1] + .5 * d[2]) / (d[0] + d[1] + .5 * (d[2] + d[3] + d[4])))
    blue = next(r for r in rows if r["slug"] == "blue-dresses")
    assert blue["judged_products"] == 2 and blue["ndcg"] < 1
    # assignments: red is assigned to 1, 2 (red) and 3 (navy): precision 2/3 for red; Recall@10 hits everywhere
    a = m["attributes"]
    assert a["families"]["colour"]["precision"] == pytest.approx(round(4 / 5, 4))  # red x4 (3 right), blue x1
    assert a["recall_at_k"] == 1.0
    assert a["unjudged_rows"] == {"style": 1}
    mapping = json.loads((run.root / "report" / "mapping.json").read_text())
    assert "style=boho" in mapping["unmatched"] and "color=<b>bold</b>" in mapping["unmatched"]
    # one collection per distinct normalised query ("t-shirt" and "tshirt" are different words to the old search)
    assert m["baseline"]["collections"] == 7
    assert m["baseline"]["all_queries"]["not_judged_reasons"] == {"no attributes": 1,
                                                                  "no label value for category=jumpsuit": 1}
    # the headline baseline keeps only queries the catalogue can answer with k labelled products: none of 7 here
    assert m["baseline"]["not_judged_reasons"]["fewer than 10 labelled matches in the catalogue"] == 5
    assert m["baseline"]["judged"] == 0 and m["baseline"]["precision"] is None
    assert m["coverage"]["baseline_unique_topics"] >= 3
    html = (run.root / "report" / "evaluation.html").read_text()
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html and "<script>alert" not in html
    assert 'class="item match"' in html and 'class="item miss"' in html
    assert " object at 0x" not in html  # every cell shows a value, never a Python object's repr


def test_cli_evaluate_prints_and_writes(run, labels_path, queries_path):
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run.root), "--labels", str(labels_path),
                                      "--set", f"evaluation.queries={queries_path}"])
    assert result.exit_code == 0, result.output
    assert "collection P@10" in result.output
    assert (run.root / "report" / "metrics.json").exists()
    bad = CliRunner().invoke(app, ["evaluate", "--run", str(run.root), "--labels", str(run.root / "nope")])
    assert bad.exit_code == 2


def test_report_on_parted_artifacts_equals_the_whole_one(run, cfg, monkeypatch):
    from testlib import split_into_parts

    from pinlanding.collections import parts, schemas
    from pinlanding.collections.layout import resolve_data_path
    from pinlanding.evaluation.report import build_report

    queries = resolve_data_path(cfg.evaluation.queries)
    whole, _ = build_report(cfg.evaluation, run, queries)
    names = split_into_parts(run.products, 3, (run.attributes, schemas.ATTRIBUTES),
                             (run.assignments, schemas.ASSIGNMENTS))
    assert len(names) == 3
    monkeypatch.setattr(parts, "read_all", lambda *a, **k: pytest.fail("read a whole per-product artifact"))
    parted, _ = build_report(cfg.evaluation, run, queries)
    assert parted == whole and parted["extraction"]["per_product"]["median"] == 2.0


def test_measure_computes_without_writing(run, cfg, labels_path):
    from pinlanding.evaluation.labels import read_labels
    from pinlanding.evaluation.measure import measure
    from pinlanding.evaluation.report import load_artifacts

    tables, _ = load_artifacts(run)
    before = sorted(p.relative_to(run.root) for p in run.root.rglob("*"))
    ev = measure(tables, read_labels(labels_path), [], cfg.evaluation, cfg.feeds.min_feed_size,
                 cfg.feeds.min_confidence)
    assert sorted(p.relative_to(run.root) for p in run.root.rglob("*")) == before
    assert ev.metrics["collections"] == run_evaluate(cfg, run, labels_path)["collections"]
    assert len(ev.collections) == ev.metrics["collections"]["collections"] == 5
