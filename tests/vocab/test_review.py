"""The decisions store under concurrency, and the review app over HTTP (escaping, auth, CSRF, images)."""
from __future__ import annotations

import json
import multiprocessing as mp
import re
import shutil
import threading

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from curate_fixtures import context, tiny_attributes, write_queries, write_run, topics_over_curated

from pinlanding.collections.artifacts import write_table
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import VOCAB
from pinlanding.vocab.curate import run_vocab
from pinlanding.vocab.decisions import Decision, DecisionStore, ReviewState, decisions_path
from pinlanding.vocab.review import create_app, is_loopback, serve_review

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


# --- decisions store ------------------------------------------------------------------------------

def _append_many(path: str, who: str, n: int) -> None:
    store = DecisionStore(path)
    for i in range(n):
        store.append(Decision(action="approve", who=who, key="color", value=f"v{i} " + "x" * 300))


def test_concurrent_processes_and_threads_never_lose_a_decision(tmp_path):
    path = str(tmp_path / "review" / "decisions.jsonl")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(path, f"proc{i}", 50)) for i in range(4)]
    threads = [threading.Thread(target=_append_many, args=(path, f"thread{i}", 50)) for i in range(4)]
    for w in procs + threads:
        w.start()
    for w in procs + threads:
        w.join()
    store = DecisionStore(path)
    decisions = store.read()
    assert len(decisions) == 400 and store.skipped_ == 0
    assert len({d.id for d in decisions}) == 400
    assert all(d.at and d.who for d in decisions)


def test_decisions_validate_and_latest_wins():
    with pytest.raises(ValueError, match="unknown review action"):
        Decision(action="delete", who="a").validate()
    with pytest.raises(ValueError, match="who"):
        Decision(action="approve", who=" ", key="c", value="red").validate()
    with pytest.raises(ValueError, match="target"):
        Decision(action="rename", who="a", key="c", value="red", target="  ").validate()
    with pytest.raises(ValueError, match="non-empty value"):
        Decision(action="reject", who="a", key="c", value=" - ").validate()
    with pytest.raises(ValueError, match="topic_id"):
        Decision(action="accept", who="a").validate()
    with pytest.raises(ValueError, match="longer than"):
        Decision(action="approve", who="a", key="c", value="x" * 600).validate()
    state = ReviewState.from_decisions([
        Decision(action="reject", who="a", key="Color", value="Red"),
        Decision(action="approve", who="b", key="color", value="red "),
        Decision(action="rename", who="a", key="color", value="red", target="Crimson"),
    ])
    assert state.approved("color", "red").who == "b" and state.rejected("color", "red") is None
    assert state.mapping[("color", "red")].target == "Crimson" and state.protected("color", "red")


# --- the app --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    layout = write_run(root / "run", tiny_attributes(), 60)
    queries = write_queries(root / "queries.tsv")
    call_stage(run_vocab, *context(layout, queries))
    topics_over_curated(context(layout, queries))
    return layout


@pytest.fixture
def run(base_run, tmp_path):
    """A private copy of the curated run (image paths still point at the module's files)."""
    shutil.copytree(base_run.root, tmp_path / "run")
    return RunLayout(tmp_path / "run")


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


def _login(client: TestClient, who: str = "Ana") -> str:
    csrf = _csrf(client.get("/").text)
    assert client.post("/reviewer", data={"who": who, "csrf_token": csrf}).status_code == 200
    return csrf


def test_pages_show_values_variants_images_and_topics(run):
    client = TestClient(create_app(run))
    home = client.get("/")
    assert home.status_code == 200 and "category" in home.text and "script-src" not in home.text
    assert "default-src 'none'" in home.headers["content-security-policy"]
    page = client.get("/values", params={"key": "category"}).text
    assert "T-Shirt" in page and "Tshirts" in page and 'src="/image?pid=p0"' in page
    assert client.get("/image", params={"pid": "p0"}).headers["content-type"] == "image/jpeg"
    topics = client.get("/topics", params={"status": "kept"}).text
    assert "Black T-Shirt" in topics
    assert client.get("/values", params={"key": "nope"}).status_code == 404


def test_images_are_served_only_for_catalogue_products(run):
    client = TestClient(create_app(run))
    for pid in ("../../etc/passwd", "/etc/passwd", "p999", ""):
        assert client.get("/image", params={"pid": pid}).status_code == 404
    assert client.get("/image/../../etc/passwd").status_code == 404


def test_decisions_need_a_name_and_a_form_token_and_record_who(run):
    client = TestClient(create_app(run))
    csrf = _csrf(client.get("/").text)
    form = {"action": "reject", "key": "color", "value": "Red", "csrf_token": csrf, "back": "/values?key=color"}
    assert client.post("/decide", data=form).status_code == 400  # no reviewer name yet
    _login(client, "Ana <b>Merch</b>")
    assert client.post("/decide", data={**form, "csrf_token": "forged"}).status_code == 403
    assert client.post("/decide", json=form).status_code == 403  # only urlencoded forms
    resp = client.post("/decide", data=form)
    assert resp.status_code == 200 and "reject by Ana &lt;b&gt;Merch&lt;/b&gt;" in resp.text
    d = DecisionStore(decisions_path(run)).read()[-1]
    assert (d.action, d.key, d.value, d.who, d.client) == ("reject", "color", "Red", "Ana <b>Merch</b>", "testclient")
    # an open redirect is refused
    resp = client.post("/decide", data={**form, "back": "//evil.example/x"}, follow_redirects=False)
    assert resp.headers["location"] == "/"
    # an invalid decision is explained, not stored
    bad = client.post("/decide", data={**form, "action": "rename", "target": ""})
    assert bad.status_code == 400 and "target" in bad.text
    assert len(DecisionStore(decisions_path(run)).read()) == 2


def test_topic_decisions_store_the_tuple(run):
    client = TestClient(create_app(run))
    csrf = _login(client)
    tid = re.search(r'data-topic="([0-9a-f]+)"', client.get("/topics").text).group(1)
    assert client.post("/decide", data={"action": "reject_topic", "topic_id": tid, "csrf_token": csrf,
                                        "back": "/topics"}).status_code == 200
    d = DecisionStore(decisions_path(run)).read()[-1]
    assert d.topic_id == tid and json.loads(d.target)
    assert client.post("/decide", data={"action": "accept", "topic_id": "nope", "csrf_token": csrf}).status_code == 404


def test_everything_rendered_is_escaped(tmp_path):
    layout = write_run(tmp_path / "run", [], 3, titles={"p0": XSS})
    rows = [{"key": XSS, "value": XSS, "variants": [XSS], "product_count": 3, "status": "pending",
             "judge_score": None, "provenance": "{}"},
            {"key": "color", "value": "लाल 🌹", "variants": [], "product_count": 2, "status": "pending",
             "judge_score": 0.5, "provenance": "{}"}]
    write_table(pa.Table.from_pylist(rows, schema=VOCAB), layout.vocabulary, VOCAB)
    DecisionStore(decisions_path(layout)).append(Decision(action="rename", who=XSS, key=XSS, value=XSS, target=XSS))
    client = TestClient(create_app(layout))
    for page in (client.get("/"), client.get("/values", params={"key": XSS}), client.get("/values", params={"key": "color"})):
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;" in client.get("/values", params={"key": XSS}).text
    assert "लाल 🌹" in client.get("/values", params={"key": "color"}).text


def test_token_guards_every_page_when_set(run):
    client = TestClient(create_app(run, token="s3cret"))
    assert client.get("/").status_code == 401
    assert client.get("/image", params={"pid": "p0"}).status_code == 401
    assert client.get("/", params={"token": "wrong"}).status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/", params={"token": "s3cret"}).status_code == 200
    assert client.get("/values", params={"key": "color"}).status_code == 200  # the cookie now carries it


def test_serving_beyond_loopback_requires_a_token(run, tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    with pytest.raises(ValueError, match="token"):
        serve_review(run, host="0.0.0.0", port=0)
    with pytest.raises(FileNotFoundError, match="vocab"):
        serve_review(RunLayout(tmp_path / "empty"), host="127.0.0.1")
