"""The review app in a real headless browser: decide, reload, see it persisted, rerun curation, see it honoured."""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from curate_fixtures import context, tiny_attributes, write_queries, write_run, topics_over_curated

from pinlanding.collections.pipeline import call_stage
from pinlanding.vocab.curate import run_vocab
from pinlanding.vocab.decisions import DecisionStore, decisions_path
from pinlanding.vocab.review import create_app

CHROMIUM = os.environ.get("PINLANDING_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def served(tmp_path):
    import uvicorn

    layout = write_run(tmp_path / "run", tiny_attributes(), 60)
    queries = write_queries(tmp_path / "queries.tsv")
    call_stage(run_vocab, *context(layout, queries))
    topics_over_curated(context(layout, queries))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(layout), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "review server did not start"
    yield f"http://127.0.0.1:{port}", layout, queries
    server.should_exit = True
    thread.join(timeout=10)


def test_decide_reload_rerun_and_see_it_honoured(browser, served):
    base, layout, queries = served
    page = browser.new_page()
    page.goto(base + "/")
    page.get_by_test_id("who").fill("Ana Merch")
    with page.expect_navigation():  # a form post: wait for its redirect before going on
        page.get_by_role("button", name="Save").click()
    assert page.get_by_test_id("reviewer").inner_text() == "Ana Merch"

    # reject a colour and rename a category
    page.goto(base + "/values?key=color")
    red = page.locator('tr[data-value="Red"]')
    assert red.count() == 1 and red.locator("img").count() > 0
    with page.expect_navigation():  # a form post: wait for its redirect before going on
        red.get_by_role("button", name="reject").click()
    page.reload()
    assert "reject by Ana Merch" in page.locator('tr[data-value="Red"]').inner_text()

    page.goto(base + "/values?key=category")
    row = page.locator('tr[data-value="T-Shirt"]')
    row.locator('input[name="target"]').fill("Tee <b>")
    with page.expect_navigation():  # a form post: wait for its redirect before going on
        row.get_by_role("button", name="rename").click()
    page.reload()
    assert "rename → Tee <b> by Ana Merch" in page.locator('tr[data-value="T-Shirt"]').inner_text()
    assert [d.action for d in DecisionStore(decisions_path(layout)).read()] == ["reject", "rename"]

    # rerun curation: the page now shows the curated result
    call_stage(run_vocab, *context(layout, queries))
    page.goto(base + "/values?key=color")
    assert page.locator('tr[data-value="Red"]').count() == 0
    assert "Red" in page.get_by_role("heading", name="Rejected in review").locator("xpath=following-sibling::table[1]").inner_text()
    page.goto(base + "/values?key=category")
    assert page.locator('tr[data-value="T-Shirt"]').count() == 0
    renamed = page.locator('tr[data-value="Tee <b>"]')
    assert renamed.count() == 1 and "Tshirts" in renamed.inner_text()

    # undo the rejection in the browser; the next run brings the value back
    page.goto(base + "/values?key=color")
    with page.expect_navigation():  # a form post: wait for its redirect before going on
        page.get_by_role("button", name="restore (approve)").click()
    call_stage(run_vocab, *context(layout, queries))
    page.reload()
    assert "approved" in page.locator('tr[data-value="Red"]').inner_text()

    # a topic decision from the topics page (topics regenerated from the renamed vocabulary first)
    topics_over_curated(context(layout, queries))
    page.goto(base + "/topics?status=kept")
    first = page.locator("tr[data-topic]").first
    title = first.locator("td a").first.inner_text()  # the title links to the topic page
    with page.expect_navigation():  # a form post: wait for its redirect before going on
        first.get_by_role("button", name="reject").click()
    topics_over_curated(context(layout, queries))
    page.goto(base + "/topics?status=rejected")
    assert "rejected in review by Ana Merch" in page.locator("tr[data-topic]", has_text=title).first.inner_text()
    page.close()
