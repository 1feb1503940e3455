"""The review app's decisions: the reviewer's name, one decision, undo, and a bulk decision with its confirmation.

Every post must carry the form token; a decision also needs the reviewer's name (every decision records who made
it). Decisions are appended to the run's :class:`~pinlanding.vocab.decisions.DecisionStore`.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from pinlanding.vocab.decisions import MERCH_ACTIONS, TOPIC_ACTIONS, UNDO, Decision, ReviewState
from pinlanding.vocab.review.auth import REVIEWER_COOKIE, Refused, checked_form, safe_back
from pinlanding.vocab.review.context import ReviewDep
from pinlanding.vocab.review.data import ReviewData
from pinlanding.vocab.workbench import TopicFilter, ValueFilter

BULK_MAX = 20_000  # decisions one bulk action may record

router = APIRouter()


async def _form(request: Request, rv: ReviewDep) -> dict[str, str]:
    return await checked_form(request, rv.form_token)


async def _decision_form(request: Request, rv: ReviewDep) -> tuple[dict[str, str], str]:
    """(form, reviewer name) of a decision's post; :class:`Refused` for a bad form token or no name."""
    form = await checked_form(request, rv.form_token)
    who = request.cookies.get(REVIEWER_COOKIE, "")
    if not who:
        raise Refused(rv.render("message.html", request, title="Who are you?", code=400,
                                message="Enter your name on the start page first: every decision records who made it."))
    return form, who


Form = Annotated[dict[str, str], Depends(_form)]  # a route's parameter: the posted form, its form token checked
DecisionForm = Annotated[tuple[dict[str, str], str], Depends(_decision_form)]  # the same, and who posts it


@router.post("/reviewer")
async def set_reviewer(form: Form):
    who = " ".join(form.get("who", "").split())[:80]
    response = RedirectResponse("/", status_code=303)
    if who:
        response.set_cookie(REVIEWER_COOKIE, who, httponly=True, samesite="strict")
    return response


@router.post("/decide")
async def decide(request: Request, rv: ReviewDep, posted: DecisionForm):
    form, who = posted
    action, topic_id = form.get("action", ""), form.get("topic_id", "")
    key, value, target = form.get("key", ""), form.get("value", ""), form.get("target", "")
    if action in TOPIC_ACTIONS + MERCH_ACTIONS:
        topic = next((t for t in rv.data.refresh().topics if t["topic_id"] == topic_id), None)
        if topic is None:
            return rv.render("message.html", request, title="Unknown topic", message=topic_id, code=404)
        if action in TOPIC_ACTIONS:
            value = topic["title"] or ""
            target = _topic_tuple(topic)
        elif action in ("pin", "exclude") and value not in rv.data.images:
            return rv.render("message.html", request, title="Not recorded", code=400,
                             message=f"No product {value!r} in the catalogue.")
    elif action == UNDO:
        return rv.render("message.html", request, title="Not recorded", message="undo from the history page", code=400)
    try:
        rv.store.append(Decision(action=action, who=who, key=key, value=value, target=target, topic_id=topic_id,
                                 note=form.get("note", ""), client=_client(request)))
    except ValueError as exc:
        return rv.render("message.html", request, title="Not recorded", message=str(exc), code=400)
    return RedirectResponse(safe_back(form.get("back", "/")), status_code=303)


@router.post("/undo")
async def undo(request: Request, rv: ReviewDep, posted: DecisionForm):
    form, who = posted
    state = ReviewState.from_decisions(rv.store.read())
    old = state.by_id.get(form.get("id", ""))
    if old is None or not state.undoable(old):
        return rv.render("message.html", request, title="Not recorded", code=400,
                         message="That decision does not exist or is already undone.")
    rv.store.append(Decision(action=UNDO, who=who, key=old.key, value=old.value, topic_id=old.topic_id,
                             target=old.target, undoes=old.id, note=f"undo {old.action}", client=_client(request)))
    return RedirectResponse(safe_back(form.get("back", "/history")), status_code=303)


@router.get("/bulk", response_class=HTMLResponse)
def bulk_confirm(request: Request, rv: ReviewDep):
    """The confirmation page of a bulk decision: the rows the filters select, and their count."""
    params = dict(request.query_params)
    try:
        selection, _ = _selection(rv.data.refresh(), params)
    except ValueError as exc:
        return rv.render("message.html", request, title="Bad selection", message=str(exc), code=400)
    return rv.render("bulk.html", request, params=params, selection=selection, count=len(selection),
                     action=params.get("action", ""), limit=BULK_MAX)


@router.post("/bulk")
async def bulk(request: Request, rv: ReviewDep, posted: DecisionForm):
    """One decision per selected row, refused when the selection no longer has the confirmed count."""
    form, who = posted
    try:
        selection, decisions_of = _selection(rv.data.refresh(), form)
        if str(len(selection)) != form.get("count", ""):
            raise ValueError(f"the selection now has {len(selection)} rows, not the {form.get('count')} you "
                             "confirmed (the run changed); review it again")
        if len(selection) > BULK_MAX:
            raise ValueError(f"{len(selection)} rows is over the limit of {BULK_MAX} per bulk decision")
        note = " ".join(("bulk " + form.get("note", "")).split())[:200]
        rv.store.extend(decisions_of(who, note, _client(request)))
    except ValueError as exc:
        return rv.render("message.html", request, title="Not recorded", message=str(exc), code=400)
    return rv.render("message.html", request, title="Recorded",
                     message=f"{len(selection)} {form.get('action')} decisions recorded by {who}.")


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _topic_tuple(topic: dict[str, Any]) -> str:
    """A topic decision's ``target``: the topic's (key, value) pairs as JSON."""
    return json.dumps([[a["key"], a["value"]] for a in topic["attributes"]], ensure_ascii=False)


Maker = Callable[[str, str, str], list[Decision]]  # (who, note, client) -> the decisions


def _selection(d: ReviewData, params: dict[str, str]) -> tuple[list[dict[str, Any]], Maker]:
    """The rows a bulk action selects (the filters of the page it came from) and a function making its decisions."""
    action, kind = params.get("action", ""), params.get("kind", "")
    if kind == "topics" and action in TOPIC_ACTIONS:
        rows = TopicFilter.parse(params).apply(d.topics, d.outcomes)

        def make(who: str, note: str, client: str) -> list[Decision]:
            return [Decision(action=action, who=who, topic_id=t["topic_id"], value=t["title"] or "", note=note,
                             client=client, target=_topic_tuple(t)) for t in rows]
    elif kind == "values" and action in ("approve", "reject"):
        key = params.get("key", "")
        if key not in d.values:
            raise ValueError(f"no key named {key!r}")
        rows = ValueFilter(params.get("q", ""), params.get("status", ""), params.get("sort", "products")).apply(d.values[key])

        def make(who: str, note: str, client: str) -> list[Decision]:
            return [Decision(action=action, who=who, key=key, value=r["value"], note=note, client=client) for r in rows]
    else:
        raise ValueError(f"bulk {action!r} of {kind!r} is not available (topics: accept, reject_topic; values: "
                         "approve, reject)")
    return rows, make
