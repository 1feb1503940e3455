"""The workbench on a real dev run (``PINLANDING_DEV_RUN``, default ``runs/head`` of this checkout): a topic
found by one search instead of paging, filters that agree with the artifacts, a value's products by source,
honest scores. Decisions go to a temporary file; the run folder is only read."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pinlanding.collections.artifacts import read_table
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.schemas import TOPICS, VOCAB
from pinlanding.vocab.review import create_app
from pinlanding.vocab.workbench import number

pytestmark = pytest.mark.slow
RUN = Path(os.environ.get("PINLANDING_DEV_RUN", Path(__file__).resolve().parents[2] / "runs" / "head"))


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    if not (RUN / "topics" / "topics.parquet").exists():
        pytest.skip(f"no dev run with topics at {RUN} (set PINLANDING_DEV_RUN)")
    layout = RunLayout(RUN)
    client = TestClient(create_app(layout, decisions_file=tmp_path_factory.mktemp("dev") / "decisions.jsonl"))
    return layout, client


def test_search_finds_a_real_topic_and_filters_agree_with_the_artifacts(dev):
    layout, client = dev
    topics = read_table(layout.topics, TOPICS).to_pylist()
    deep = sorted(topics, key=lambda t: (-(t["judge_score"] or -1), t["topic_id"]))[len(topics) * 9 // 10]  # page 90%
    html = client.get("/topics", params={"q": deep["title"]}).text
    assert f'data-topic="{deep["topic_id"]}"' in html
    kept = client.get("/topics", params={"status": "kept", "min_size": "50"}).text
    shown = int(re.search(r"Topics \((\d+) found\)", kept).group(1))
    assert shown == sum(t["status"] == "kept" and (t["support"] or 0) >= 50 for t in topics)
    near = min((t for t in topics if t["judge_score"] is not None), key=lambda t: abs(t["judge_score"] - 0.5))
    page = client.get("/topic", params={"id": near["topic_id"]}).text
    assert f"score {number(near['judge_score'])}" in page


def test_a_real_values_products_page_by_source(dev):
    layout, client = dev
    vocab = read_table(layout.root / "vocabulary" / "vocabulary.parquet", VOCAB).to_pylist()
    row = max(vocab, key=lambda r: (r["product_count"] or 0, r["value"]))
    params = {"key": row["key"], "value": row["value"]}
    total = int(re.search(r'data-testid="value-count">(\d+)', client.get("/value", params=params).text).group(1))
    by_source = [int(re.search(r'data-testid="value-count">(\d+)', client.get(
        "/value", params={**params, "source": s}).text).group(1)) for s in ("text", "photo", "both")]
    assert total > 0 and sum(by_source) == total
    second = client.get("/value", params={**params, "offset": 48}).text
    assert total <= 48 or second.count("<li data-product=") == min(48, total - 48)
