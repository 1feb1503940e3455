"""The merchandisers' workbench: undo and merchandising decisions, scoped digests, search, filters,
previews, bulk decisions and the history, over HTTP."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from test_review import _login, base_run, run  # noqa: E402,F401  (fixtures: a curated tiny run, a private copy)

from pinlanding.vocab.decisions import Decision, DecisionStore, ReviewState, decisions_path, family_digest  # noqa: E402
from pinlanding.vocab.review import create_app  # noqa: E402
from pinlanding.vocab.workbench import number, source_kind  # noqa: E402


# --- decisions ------------------------------------------------------------------------------------

def test_undo_puts_a_decision_back_to_pending_whatever_came_before():
    reject = Decision(action="reject", who="a", key="color", value="Red")
    approve = Decision(action="approve", who="b", key="color", value="red")
    rename = Decision(action="rename", who="a", key="color", value="Red", target="Crimson")
    undo = Decision(action="undo", who="c", key="color", value="red", undoes=approve.id)
    state = ReviewState.from_decisions([reject, approve, rename, undo])
    assert state.status.get(("color", "red")) is None  # pending, not back to "reject"
    assert state.mapping[("color", "red")] is rename and not state.undoable(approve) and state.undoable(rename)
    assert state.undone[approve.id] is undo
    with pytest.raises(ValueError, match="undoes"):
        Decision(action="undo", who="a").validate()


def test_merchandising_decisions_validate_and_combine():
    for bad, match in ((dict(action="pin", value="p1", target="0"), "position"),
                       (dict(action="pin", value="", target="1"), "product id"),
                       (dict(action="retitle", target="  "), "title"),
                       (dict(action="window", value="2026-13-01"), "YYYY-MM-DD"),
                       (dict(action="window", value="2026-12-02", target="2026-12-01"), "end before"),
                       (dict(action="window"), "first or a last day")):
        with pytest.raises(ValueError, match=match):
            Decision(who="m", topic_id="t", **bad).validate()
    pin = Decision(action="pin", who="m", topic_id="t", value="p1", target="2")
    log = [pin, Decision(action="exclude", who="m", topic_id="t", value="p2"),
           Decision(action="exclude", who="m", topic_id="t", value="p1"),  # an exclusion ends the pin
           Decision(action="pin", who="m", topic_id="t", value="p3", target="1"),
           Decision(action="retitle", who="m", topic_id="t", target="New  title"),
           Decision(action="window", who="m", topic_id="t", value="2026-12-01")]
    rules = ReviewState.from_decisions(log).merch["t"]
    assert rules.pins == {"p3": 1} and rules.excluded == {"p1", "p2"} and rules.title == "New title"
    assert rules.window == ("2026-12-01", "")
    undo = Decision(action="undo", who="m", topic_id="t", undoes=log[-2].id)
    assert ReviewState.from_decisions([*log, undo]).merch["t"].title == ""


def test_family_digests_change_only_with_their_decisions(tmp_path):
    store = DecisionStore(tmp_path / "d.jsonl")
    digests = lambda: {f: family_digest(store.path, [f]) for f in ("value", "topic", "merch")}  # noqa: E731
    start = digests()
    pin = store.append(Decision(action="pin", who="m", topic_id="t", value="p1", target="1"))
    after_pin = digests()
    assert after_pin["merch"] != start["merch"] and after_pin["value"] == start["value"] == after_pin["value"]
    store.append(Decision(action="undo", who="m", topic_id="t", undoes=pin.id))
    after_undo = digests()
    assert after_undo["merch"] != after_pin["merch"] and after_undo["topic"] == start["topic"]
    store.extend([Decision(action="approve", who="m", key="color", value=v) for v in ("red", "blue")])
    assert digests()["value"] != start["value"] and len(store.read()) == 4


def test_numbers_are_shown_without_rounding_across_a_threshold():
    assert number(0.4988) == "0.4988" and number(0.5) == "0.5" and number(None) == ""
    assert [source_kind(s) for s in ("title+image", "encoder", "extraction", "extraction+encoder", None)] == \
        ["both", "photo", "text", "both", "text"]


# --- the app --------------------------------------------------------------------------------------

@pytest.fixture
def client(run):
    c = TestClient(create_app(run))
    c.run = run
    return c


def _topic_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-topic="([0-9a-f]+)"', html)


def test_topic_search_filters_and_value_preview(client):
    every = _topic_rows(client.get("/topics").text)
    found = client.get("/topics", params={"q": "black t-shirt"}).text
    hits = _topic_rows(found)
    assert hits and len(hits) < len(every) and "Black T-Shirt" in found
    kept = _topic_rows(client.get("/topics", params={"status": "kept", "key": "color"}).text)
    assert kept and set(kept) <= set(every)
    assert _topic_rows(client.get("/topics", params={"min_score": "2"}).text) == []
    assert client.get("/topics", params={"min_size": "many"}).status_code == 400
    assert "not built yet" in found  # no feeds run yet: the app says so instead of "kept"

    values = client.get("/values", params={"key": "color", "q": "re"}).text
    assert 'data-value="Red"' in values and 'data-value="Black"' not in values
    page = client.get("/value", params={"key": "color", "value": "Red"})
    assert page.status_code == 200 and 'data-product="p' in page.text
    total = int(re.search(r'data-testid="value-count">(\d+)', page.text).group(1))
    photo = client.get("/value", params={"key": "color", "value": "Red", "source": "photo"}).text
    text = client.get("/value", params={"key": "color", "value": "Red", "source": "text"}).text
    counts = [int(re.search(r'data-testid="value-count">(\d+)', h).group(1)) for h in (photo, text)]
    assert total > 0 and sum(counts) <= total and counts[1] > 0
    assert client.get("/value", params={"key": "color", "value": "Nope"}).status_code == 404


def test_topic_page_previews_merchandising_and_undo(client):
    csrf = _login(client, "Mia <i>")
    tid = _topic_rows(client.get("/topics", params={"status": "kept"}).text)[0]
    page = client.get("/topic", params={"id": tid})
    assert page.status_code == 200 and "Not built yet" in page.text and 'data-testid="judge"' in page.text
    form = {"csrf_token": csrf, "topic_id": tid, "back": f"/topic?id={tid}"}
    assert client.post("/decide", data={**form, "action": "retitle", "target": "Tees <script>"}).status_code == 200
    assert client.post("/decide", data={**form, "action": "pin", "value": "p999", "target": "1"}).status_code == 400
    assert client.post("/decide", data={**form, "action": "pin", "value": "p1", "target": "1"}).status_code == 200
    page = client.get("/topic", params={"id": tid}).text
    assert "Tees &lt;script&gt;" in page and "<script>" not in page
    assert re.search(r'<li data-product="p1" class="pinned">', page)  # pinned from the catalogue into the preview
    log = DecisionStore(decisions_path(client.run)).read()
    assert [d.action for d in log] == ["retitle", "pin"] and all(d.who == "Mia <i>" and d.at for d in log)
    # undo the retitle from the history: back to the judge's title, the log only grows
    history = client.get("/history").text
    assert "Mia &lt;i&gt;" in history and history.count(">undo</button>") == 2
    undo = client.post("/undo", data={"csrf_token": csrf, "id": log[0].id, "back": "/history"})
    assert undo.status_code == 200 and "undone by Mia &lt;i&gt;" in undo.text
    assert client.post("/undo", data={"csrf_token": csrf, "id": log[0].id}).status_code == 400  # already undone
    assert client.post("/undo", data={"csrf_token": "forged", "id": log[1].id}).status_code == 403
    assert len(DecisionStore(decisions_path(client.run)).read()) == 3
    title = re.search(r'data-testid="topic-title">([^<]*)<', client.get("/topic", params={"id": tid}).text).group(1)
    assert title and "Tees" not in title


def test_bulk_decision_confirms_the_count_and_records_each_row(client):
    csrf = _login(client)
    params = {"kind": "topics", "action": "accept", "q": "black"}
    expected = _topic_rows(client.get("/topics", params={"q": "black"}).text)
    confirm = client.get("/bulk", params=params)
    count = int(re.search(r'data-testid="bulk-count">.*?<b>(\d+)</b>', confirm.text, re.S).group(1))
    assert count == len(expected) > 0 and not DecisionStore(decisions_path(client.run)).read()
    stale = client.post("/bulk", data={**params, "csrf_token": csrf, "count": str(count + 1)})
    assert stale.status_code == 400 and not DecisionStore(decisions_path(client.run)).read()
    done = client.post("/bulk", data={**params, "csrf_token": csrf, "count": str(count)})
    assert done.status_code == 200
    log = DecisionStore(decisions_path(client.run)).read()
    assert sorted(d.topic_id for d in log) == sorted(expected) and {d.action for d in log} == {"accept"}
    assert all(d.note.startswith("bulk") for d in log)
    values = client.get("/bulk", params={"kind": "values", "action": "approve", "key": "color", "q": "re"})
    assert values.status_code == 200 and "Red" in values.text
    assert client.get("/bulk", params={"kind": "values", "action": "rename", "key": "color"}).status_code == 400


def test_undo_of_a_replaced_decision_changes_nothing():
    pin = Decision(action="pin", who="m", topic_id="t", value="p1", target="2")
    exclude = Decision(action="exclude", who="m", topic_id="t", value="p1")
    state = ReviewState.from_decisions([pin, exclude, Decision(action="undo", who="m", topic_id="t", undoes=pin.id)])
    assert state.merch["t"].excluded == {"p1"} and not state.undoable(pin) and state.undoable(exclude)
    assert pin.id not in state.undone  # the undo had nothing in force to undo
