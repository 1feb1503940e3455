"""The review app's pages (GET): keys, a key's values, a value's products, topics, a topic, history, photos."""
from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from pinlanding.feeds.merch import apply_to_products
from pinlanding.feeds.site import safe_name
from pinlanding.vocab.decisions import ReviewState
from pinlanding.vocab.review.context import ReviewDep
from pinlanding.vocab.workbench import (SOURCES, TOPIC_SORTS, VALUE_SORTS, TopicFilter, ValueFilter, value_products,
                                        value_sources)

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
PAGE_SIZE = 100
PRODUCT_PAGE = 48  # products per preview page

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def index(request: Request, rv: ReviewDep):
    d = rv.data.refresh()
    keys = [{"key": k, "values": len(v), "products": sum(r["product_count"] for r in v),
             "approved": sum(r["status"] == "approved" for r in v), "rejected": len(d.rejected.get(k, []))}
            for k, v in sorted(d.values.items())]
    kept = sum(t["status"] == "kept" for t in d.topics)
    return rv.render("index.html", request, keys=keys, topics=len(d.topics), kept=kept,
                     decisions_file=str(rv.store.path), skipped=rv.store.skipped_)


@router.get("/values", response_class=HTMLResponse)
def values(request: Request, rv: ReviewDep, key: str, q: str = "", status: str = "", sort: str = "products"):
    d = rv.data.refresh()
    if key not in d.values and key not in d.rejected:
        return rv.render("message.html", request, title="Unknown key", message=f"No key named {key!r}.", code=404)
    every = d.values.get(key, [])
    flt = ValueFilter(q, status, sort)
    rows = flt.apply(every)
    held = {r["value"]: json.loads(r["provenance"] or "{}").get("review_reason") for r in rows
            if r["status"] == "needs_review"}  # why the value waits for an approval
    return rv.render("values.html", request, key=key, rows=rows, total=len(every), variants=d.variants, held=held,
                     examples=d.examples, images=d.images, rejected=d.rejected.get(key, []),
                     all_values=[r["value"] for r in every], flt=flt, sorts=list(VALUE_SORTS),
                     statuses=sorted({r["status"] for r in every}), sources=value_sources)


@router.get("/value", response_class=HTMLResponse)
def value(request: Request, rv: ReviewDep, key: str, value: str, source: str = "", min_confidence: str = "",
          offset: int = 0):
    d = rv.data.refresh()
    row = next((r for r in d.values.get(key, []) if r["value"] == value), None)
    if row is None:
        return rv.render("message.html", request, title="Unknown value", message=f"No value {value!r} of {key!r}.",
                         code=404)
    try:
        floor = float(min_confidence) if min_confidence.strip() else None
    except ValueError:
        return rv.render("message.html", request, title="Bad filter", code=400,
                         message=f"min_confidence must be a number, not {min_confidence!r}")
    products = value_products(rv.layout, key, value, source if source in SOURCES else "", floor)
    offset = max(0, offset)
    return rv.render("value.html", request, key=key, row=row, products=products[offset:offset + PRODUCT_PAGE],
                     total=len(products), offset=offset, page=PRODUCT_PAGE, images=d.images, sources=SOURCES,
                     source=source, min_confidence=min_confidence, by_source=value_sources(row["provenance"]))


@router.get("/topics", response_class=HTMLResponse)
def topics(request: Request, rv: ReviewDep, offset: int = 0):
    d = rv.data.refresh()
    try:
        flt = TopicFilter.parse(dict(request.query_params))
    except ValueError as exc:
        return rv.render("message.html", request, title="Bad filter", message=str(exc), code=400)
    rows = flt.apply(d.topics, d.outcomes)
    offset = max(0, offset)
    keys = sorted({a["key"] for t in d.topics for a in t["attributes"] or []})
    return rv.render("topics.html", request, rows=rows[offset:offset + PAGE_SIZE], total=len(rows), flt=flt,
                     offset=offset, page=PAGE_SIZE, outcomes=d.outcomes, keys=keys, sorts=list(TOPIC_SORTS))


@router.get("/topic", response_class=HTMLResponse)
def topic(request: Request, rv: ReviewDep, id: str):
    d = rv.data.refresh()
    t = next((t for t in d.topics if t["topic_id"] == id), None)
    if t is None:
        return rv.render("message.html", request, title="Unknown topic", message=id, code=404)
    outcome = d.outcomes.get(id)
    state = ReviewState.from_decisions(rv.store.read())
    rules = state.merch.get(id)
    preview = list(outcome.products) if outcome else []
    if rules is not None and not rules.empty():  # what the next feeds run will publish
        preview = apply_to_products(preview, rules, set(d.images))
    page = f"c/{safe_name(outcome.slug)}.html" if outcome and outcome.published else ""
    has_page = bool(page) and (rv.layout.root / "site" / page).is_file()
    log = [x for x in rv.store.read() if x.topic_id == id]
    return rv.render("topic.html", request, t=t, outcome=outcome, preview=preview, rules=rules, images=d.images,
                     page=page if has_page else "", log=log[::-1])


@router.get("/history", response_class=HTMLResponse)
def history(request: Request, rv: ReviewDep, offset: int = 0, who: str = "", action: str = ""):
    entries = [x for x in rv.store.read() if (not who or x.who == who) and (not action or x.action == action)][::-1]
    offset = max(0, offset)
    return rv.render("history.html", request, entries=entries[offset:offset + PAGE_SIZE], total=len(entries),
                     offset=offset, page=PAGE_SIZE, who=who, action=action)


@router.get("/image")
def image(rv: ReviewDep, pid: str):
    """A product photo, only for product ids of the catalogue."""
    entry = rv.data.refresh().images.get(pid)
    path = Path(entry[0]) if entry and entry[0] else None
    if path is None or path.suffix.lower() not in IMAGE_TYPES or not path.is_file():
        return Response("no image", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=IMAGE_TYPES[path.suffix.lower()])
