"""The merchandisers' workbench in real headless Chromium: find a topic by search, preview it, bulk-accept a
filtered set, undo one decision, pin and exclude a product, retitle. The next feeds run's handling of the same
decisions is checked in tests/feeds/test_merch.py. ``PINLANDING_SHOTS=DIR`` saves the README's screenshots."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_review_browser import browser, served  # noqa: E402,F401  (fixtures: Chromium, a served tiny run)

from pinlanding.vocab.decisions import DecisionStore, ReviewState, decisions_path  # noqa: E402

pytestmark = pytest.mark.browser
SHOTS = os.environ.get("PINLANDING_SHOTS")


def _shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"workbench-{name}.png"), full_page=False)


def _submit(page, button) -> None:
    with page.expect_navigation():  # a form post: wait for its redirect before going on
        button.click()


def test_search_preview_bulk_undo_pin_exclude_retitle(browser, served):
    base, layout, _ = served
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(base + "/")
    page.get_by_test_id("who").fill("Ana Merch")
    _submit(page, page.get_by_role("button", name="Save"))

    # find a topic by search and open its preview
    page.goto(base + "/topics")
    every = page.locator("tr[data-topic]").count()
    page.get_by_test_id("topic-search").fill("black")
    _submit(page, page.get_by_role("button", name="Filter"))
    found = page.locator("tr[data-topic]")
    n_found = found.count()
    assert 0 < n_found < every
    _shot(page, "topics")
    title = found.first.locator("td a").first.inner_text()
    _submit(page, found.first.locator("td a").first)
    assert page.get_by_test_id("topic-title").inner_text() == title
    assert "score" in page.get_by_test_id("judge").inner_text()
    topic_url, topic_id = page.url, page.url.split("id=")[1]

    # bulk-accept the filtered set after the confirmation shows its count
    page.goto(base + "/topics?q=black")
    _submit(page, page.get_by_test_id("bulk-accept"))
    count = int(page.get_by_test_id("bulk-count").locator("b").inner_text())
    assert count == n_found
    _shot(page, "bulk")
    _submit(page, page.get_by_test_id("bulk-confirm"))
    assert f"{count} accept decisions recorded by Ana Merch" in page.inner_text("main")
    log = DecisionStore(decisions_path(layout)).read()
    assert len(log) == count and {d.action for d in log} == {"accept"}

    # undo one of them from the history: a new entry, that topic back to pending
    page.goto(base + "/history")
    assert page.locator("tr[data-entry]").count() == count
    first = page.locator("tr[data-entry]").first
    undone_id = first.get_attribute("data-entry")
    _submit(page, first.get_by_role("button", name="undo"))
    assert "undone by Ana Merch" in page.locator(f'tr[data-entry="{undone_id}"]').inner_text()
    _shot(page, "history")
    log = DecisionStore(decisions_path(layout)).read()
    state = ReviewState.from_decisions(log)
    assert len(log) == count + 1 and log[-1].action == "undo" and log[-1].undoes == undone_id
    undone = next(d for d in log if d.id == undone_id)
    assert undone.topic_id not in state.topics and len(state.topics) == count - 1

    # pin a product, exclude another, retitle: the preview shows what the next feeds run will publish
    page.goto(topic_url)
    page.get_by_test_id("pin-product").fill("p3")
    page.get_by_test_id("pin-position").fill("1")
    _submit(page, page.get_by_role("button", name="pin", exact=True))
    items = page.get_by_test_id("preview").locator("li")
    assert items.first.get_attribute("data-product") == "p3" and "pinned" in items.first.inner_text()
    _submit(page, items.first.get_by_role("button", name="exclude"))
    assert page.get_by_test_id("preview").locator('li[data-product="p3"]').count() == 0
    page.get_by_test_id("retitle").fill("Night <b>out</b>")
    _submit(page, page.get_by_role("button", name="retitle"))
    assert page.get_by_test_id("topic-title").inner_text() == "Night <b>out</b>"  # escaped, shown as typed
    _shot(page, "topic")
    rules = ReviewState.from_decisions(DecisionStore(decisions_path(layout)).read()).merch[topic_id]
    assert rules.excluded == {"p3"} and rules.pins == {} and rules.title == "Night <b>out</b>"

    # a value's products, filtered by source
    page.goto(base + "/values?key=color")
    page.get_by_test_id("value-search").fill("red")
    _submit(page, page.get_by_role("button", name="Filter"))
    _submit(page, page.locator('tr[data-value="Red"] td.value a'))
    total = int(page.get_by_test_id("value-count").inner_text().split()[0])
    page.get_by_test_id("source").select_option("text")
    _submit(page, page.get_by_role("button", name="Filter"))
    assert 0 < int(page.get_by_test_id("value-count").inner_text().split()[0]) <= total
    _shot(page, "value")
    page.close()
