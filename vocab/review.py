"""The merchandisers' review app (FastAPI, server-rendered, no JavaScript).

Pages: ``/`` (keys, reviewer name), ``/values?key=K`` (canonical values with counts, merged variants,
sample photos, text/photo sources, approve/reject/rename/merge/split; search, status filter, sorting),
``/value?key=K&value=V`` (its products, paged, by source and confidence), ``/topics`` (search and filters
by text, key, status, published, size, judge score; accept/reject), ``/topic?id=T`` (the feed it will
publish or why not, its page, the judge's reason; pin, exclude, retitle, publish window), ``/bulk`` (one
decision for a whole filtered selection, after a confirmation showing the count), ``/history`` (the
decisions log, each entry with who and when, and undo back to pending), ``/image?pid=ID`` (a product
photo, only for product ids present in ``catalog/products.parquet``), ``/site/...`` (the run's pages).
Decisions go through :class:`~pinlanding.vocab.decisions.DecisionStore` (append-only, locked) and take
effect at the next run, which reruns only the stages they change.

Security: loopback by default; any other address needs a token (cookie after ``?token=``, or a
``Authorization: Bearer`` header). Every form carries a CSRF token, all text is autoescaped by Jinja2,
and the Content-Security-Policy forbids scripts.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from pinlanding.collections.artifacts import read_table
from pinlanding.collections.http import read_body
from pinlanding.collections.parts import part_names, read_part
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.net import is_loopback
from pinlanding.collections.schemas import ATTRIBUTES, PRODUCTS, TOPICS, VOCAB, VOCAB_DROPPED, VOCAB_MERGES
from pinlanding.feeds.merch import apply_to_products
from pinlanding.feeds.site import safe_name
from pinlanding.collections.text import key_form
from pinlanding.vocab.clustering import normalize_value
from pinlanding.vocab.decisions import (MERCH_ACTIONS, TOPIC_ACTIONS, UNDO, Decision, DecisionStore,
                                       ReviewState, decisions_path)
from pinlanding.vocab.workbench import (SOURCES, TOPIC_SORTS, VALUE_SORTS, Outcome, TopicFilter, ValueFilter,
                                        feed_outcomes, number, value_products, value_sources)

TOKEN_COOKIE, REVIEWER_COOKIE = "pl_review_token", "pl_reviewer"
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
PAGE_SIZE = 100
PRODUCT_PAGE = 48  # products per preview page
BULK_MAX = 20_000  # decisions one bulk action may record
MAX_FORM_BYTES = 16_384
MIN_TOKEN_CHARS = 16  # a shorter token is guessable
HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
                                      "frame-ancestors 'none'; base-uri 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def _run_settings(layout: RunLayout) -> tuple[str | None, int]:
    """``vocab.decisions_path`` and ``vocab.sample_images`` from the run's resolved config, if any."""
    try:
        cfg = yaml.safe_load((layout.root / "config.yaml").read_text()) or {}
        vocab = cfg.get("vocab") or {}
        return vocab.get("decisions_path"), int(vocab.get("sample_images", 4))
    except (OSError, yaml.YAMLError, ValueError, AttributeError):
        return None, 4


@dataclass
class ReviewData:
    """The run's artifacts as the pages need them, reloaded when a file changes."""

    layout: RunLayout
    samples: int = 4
    _stamp: tuple = ()
    values: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    variants: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    rejected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    images: dict[str, tuple[str, str]] = field(default_factory=dict)  # product_id -> (image_path, title), whole catalogue
    topics: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # topic_id -> what the last feeds run made of it
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _files(self) -> list[Path]:
        folder = self.layout.root / "vocabulary"
        return [self.layout.root / "catalog" / "products.parquet", folder / "vocabulary.parquet",
                folder / "merges.parquet", folder / "dropped.parquet", folder / "attributes.parquet",
                self.layout.root / "topics" / "topics.parquet", self.layout.feeds,
                self.layout.dir("feeds") / "dropped.parquet"]

    def refresh(self) -> "ReviewData":
        """Reload everything if any artifact changed; one thread at a time, and readers see whole snapshots."""
        with self._lock:
            stamp = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in self._files())
            if stamp != self._stamp:
                self._load()
                self._stamp = stamp
        return self

    def _load(self) -> None:
        products, vocab_file, merges_file, dropped_file, curated_file, topics_file = self._files()[:6]
        if not vocab_file.exists():
            raise FileNotFoundError(f"{vocab_file} does not exist; run `pinlanding stage vocab --out {self.layout.root}`")
        values: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in read_table(vocab_file, VOCAB).to_pylist():
            values[row["key"]].append(row)
        variants: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        if merges_file.exists():
            for m in read_table(merges_file, VOCAB_MERGES).to_pylist():
                variants[(m["key"], m["canonical"])].append(m)
        rejected: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if dropped_file.exists():
            for d in read_table(dropped_file, VOCAB_DROPPED).to_pylist():
                if d["reason"] == "rejected":
                    rejected[d["key"]].append(d)
        examples: dict[tuple[str, str], list[str]] = defaultdict(list)
        images: dict[str, tuple[str, str]] = {}
        for name in part_names(curated_file) if curated_file.exists() else []:  # co-partitioned: one part at a time
            table = read_part(products, name, PRODUCTS, ["product_id", "image_path", "title"]).to_pydict()
            part_images = {pid: (path or "", title or "") for pid, path, title in
                           zip(table["product_id"], table["image_path"], table["title"])}
            images.update(part_images)
            cur = read_part(curated_file, name, ATTRIBUTES, ["product_id", "key", "value"]).to_pydict()
            for pid, key, value in zip(cur["product_id"], cur["key"], cur["value"]):
                bucket = examples[(key, value)]
                if len(bucket) < self.samples and pid in part_images and part_images[pid][0]:
                    bucket.append(pid)
        topics = read_table(topics_file, TOPICS).to_pylist() if topics_file.exists() else []
        self.images, self.values, self.variants, self.rejected, self.examples, self.topics = (
            images, values, variants, rejected, examples, topics)
        self.outcomes = feed_outcomes(self.layout)


def create_app(layout: RunLayout, token: str | None = None, decisions_file: str | Path | None = None,
               samples: int | None = None) -> FastAPI:
    """The review app for one run folder."""
    configured, default_samples = _run_settings(layout)
    store = DecisionStore(decisions_file or decisions_path(layout, configured))
    data = ReviewData(layout, samples if samples is not None else default_samples)
    env = Environment(loader=PackageLoader("pinlanding.vocab", "templates"), autoescape=select_autoescape(default=True))
    env.filters["q"] = lambda params: urlencode(params)
    env.filters["num"] = number
    secret = secrets.token_bytes(32)
    csrf = hmac.new(secret, b"csrf", hashlib.sha256).hexdigest()
    app = FastAPI(title="pinlanding review", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    if (layout.root / "site").is_dir():  # the run's landing pages, linked from each topic
        app.mount("/site", StaticFiles(directory=str(layout.root / "site"), html=True), name="site")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is not None:
            offered = request.cookies.get(TOKEN_COOKIE) or request.query_params.get("token") or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                offered = auth[7:]
            if not hmac.compare_digest(offered.encode(), token.encode()):
                return _headers(HTMLResponse("<h1>401</h1><p>This review app needs its token: open it with "
                                             "?token=... once.</p>", status_code=401))
        response = await call_next(request)
        if token is not None and request.query_params.get("token") == token:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return _headers(response)

    def render(name: str, request: Request, code: int = 200, **ctx: Any) -> HTMLResponse:
        state = ReviewState.from_decisions(store.read())
        ctx.update(csrf=csrf, reviewer=request.cookies.get(REVIEWER_COOKIE, ""), state=state,
                   decision_for=lambda key, value: _decision_for(state, key, value))
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=code)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        d = data.refresh()
        keys = [{"key": k, "values": len(v), "products": sum(r["product_count"] for r in v),
                 "approved": sum(r["status"] == "approved" for r in v), "rejected": len(d.rejected.get(k, []))}
                for k, v in sorted(d.values.items())]
        kept = sum(t["status"] == "kept" for t in d.topics)
        return render("index.html", request, keys=keys, topics=len(d.topics), kept=kept,
                      decisions_file=str(store.path), skipped=store.skipped_)

    @app.get("/values", response_class=HTMLResponse)
    def values(request: Request, key: str, q: str = "", status: str = "", sort: str = "products"):
        d = data.refresh()
        if key not in d.values and key not in d.rejected:
            return render("message.html", request, title="Unknown key", message=f"No key named {key!r}.", code=404)
        every = d.values.get(key, [])
        flt = ValueFilter(q, status, sort)
        rows = flt.apply(every)
        held = {r["value"]: json.loads(r["provenance"] or "{}").get("review_reason") for r in rows
                if r["status"] == "needs_review"}  # why the value waits for an approval
        return render("values.html", request, key=key, rows=rows, total=len(every), variants=d.variants, held=held,
                      examples=d.examples, images=d.images, rejected=d.rejected.get(key, []),
                      all_values=[r["value"] for r in every], flt=flt, sorts=list(VALUE_SORTS),
                      statuses=sorted({r["status"] for r in every}), sources=value_sources)

    @app.get("/value", response_class=HTMLResponse)
    def value(request: Request, key: str, value: str, source: str = "", min_confidence: str = "", offset: int = 0):
        d = data.refresh()
        row = next((r for r in d.values.get(key, []) if r["value"] == value), None)
        if row is None:
            return render("message.html", request, title="Unknown value", message=f"No value {value!r} of {key!r}.",
                          code=404)
        try:
            floor = float(min_confidence) if min_confidence.strip() else None
        except ValueError:
            return render("message.html", request, title="Bad filter", code=400,
                          message=f"min_confidence must be a number, not {min_confidence!r}")
        products = value_products(layout, key, value, source if source in SOURCES else "", floor)
        offset = max(0, offset)
        return render("value.html", request, key=key, row=row, products=products[offset:offset + PRODUCT_PAGE],
                      total=len(products), offset=offset, page=PRODUCT_PAGE, images=d.images, sources=SOURCES,
                      source=source, min_confidence=min_confidence, by_source=value_sources(row["provenance"]))

    @app.get("/topics", response_class=HTMLResponse)
    def topics(request: Request, offset: int = 0):
        d = data.refresh()
        try:
            flt = TopicFilter.parse(dict(request.query_params))
        except ValueError as exc:
            return render("message.html", request, title="Bad filter", message=str(exc), code=400)
        rows = flt.apply(d.topics, d.outcomes)
        offset = max(0, offset)
        keys = sorted({a["key"] for t in d.topics for a in t["attributes"] or []})
        return render("topics.html", request, rows=rows[offset:offset + PAGE_SIZE], total=len(rows), flt=flt,
                      offset=offset, page=PAGE_SIZE, outcomes=d.outcomes, keys=keys, sorts=list(TOPIC_SORTS))

    @app.get("/topic", response_class=HTMLResponse)
    def topic(request: Request, id: str):
        d = data.refresh()
        t = next((t for t in d.topics if t["topic_id"] == id), None)
        if t is None:
            return render("message.html", request, title="Unknown topic", message=id, code=404)
        outcome = d.outcomes.get(id)
        state = ReviewState.from_decisions(store.read())
        rules = state.merch.get(id)
        preview = list(outcome.products) if outcome else []
        if rules is not None and not rules.empty():  # what the next feeds run will publish
            preview = apply_to_products(preview, rules, set(d.images))
        page = f"c/{safe_name(outcome.slug)}.html" if outcome and outcome.published else ""
        has_page = bool(page) and (layout.root / "site" / page).is_file()
        log = [x for x in store.read() if x.topic_id == id]
        return render("topic.html", request, t=t, outcome=outcome, preview=preview, rules=rules, images=d.images,
                      page=page if has_page else "", log=log[::-1])

    @app.get("/history", response_class=HTMLResponse)
    def history(request: Request, offset: int = 0, who: str = "", action: str = ""):
        entries = [x for x in store.read() if (not who or x.who == who) and (not action or x.action == action)][::-1]
        offset = max(0, offset)
        return render("history.html", request, entries=entries[offset:offset + PAGE_SIZE], total=len(entries),
                      offset=offset, page=PAGE_SIZE, who=who, action=action)

    @app.get("/image")
    def image(pid: str):
        entry = data.refresh().images.get(pid)
        path = Path(entry[0]) if entry and entry[0] else None
        if path is None or path.suffix.lower() not in IMAGE_TYPES or not path.is_file():
            return Response("no image", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type=IMAGE_TYPES[path.suffix.lower()])

    async def checked_form(request: Request) -> dict[str, str] | Response:
        form = await _form(request)
        if form is None or not hmac.compare_digest(form.get("csrf_token", ""), csrf):
            return Response("bad form or form token; reload the page", status_code=403, media_type="text/plain")
        return form

    async def decision_form(request: Request) -> tuple[dict[str, str], str] | Response:
        """(form, reviewer name) of a decision's post, or the response refusing it (bad form token, no name)."""
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        who = request.cookies.get(REVIEWER_COOKIE, "")
        return (form, who) if who else render(
            "message.html", request, title="Who are you?", code=400,
            message="Enter your name on the start page first: every decision records who made it.")

    def client(request: Request) -> str:
        return request.client.host if request.client else ""

    @app.post("/reviewer")
    async def set_reviewer(request: Request):
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        who = " ".join(form.get("who", "").split())[:80]
        response = RedirectResponse("/", status_code=303)
        if who:
            response.set_cookie(REVIEWER_COOKIE, who, httponly=True, samesite="strict")
        return response

    @app.post("/decide")
    async def decide(request: Request):
        checked = await decision_form(request)
        if isinstance(checked, Response):
            return checked
        form, who = checked
        action, topic_id = form.get("action", ""), form.get("topic_id", "")
        key, value, target = form.get("key", ""), form.get("value", ""), form.get("target", "")
        if action in TOPIC_ACTIONS + MERCH_ACTIONS:
            topic = next((t for t in data.refresh().topics if t["topic_id"] == topic_id), None)
            if topic is None:
                return render("message.html", request, title="Unknown topic", message=topic_id, code=404)
            if action in TOPIC_ACTIONS:
                value = topic["title"] or ""
                target = _topic_tuple(topic)
            elif action in ("pin", "exclude") and value not in data.images:
                return render("message.html", request, title="Not recorded", code=400,
                              message=f"No product {value!r} in the catalogue.")
        elif action == UNDO:
            return render("message.html", request, title="Not recorded", message="undo from the history page", code=400)
        try:
            store.append(Decision(action=action, who=who, key=key, value=value, target=target, topic_id=topic_id,
                                  note=form.get("note", ""), client=client(request)))
        except ValueError as exc:
            return render("message.html", request, title="Not recorded", message=str(exc), code=400)
        return RedirectResponse(_safe_back(form.get("back", "/")), status_code=303)

    @app.post("/undo")
    async def undo(request: Request):
        checked = await decision_form(request)
        if isinstance(checked, Response):
            return checked
        form, who = checked
        state = ReviewState.from_decisions(store.read())
        old = state.by_id.get(form.get("id", ""))
        if old is None or not state.undoable(old):
            return render("message.html", request, title="Not recorded", code=400,
                          message="That decision does not exist or is already undone.")
        store.append(Decision(action=UNDO, who=who, key=old.key, value=old.value, topic_id=old.topic_id,
                              target=old.target, undoes=old.id, note=f"undo {old.action}", client=client(request)))
        return RedirectResponse(_safe_back(form.get("back", "/history")), status_code=303)

    @app.get("/bulk", response_class=HTMLResponse)
    def bulk_confirm(request: Request):
        params = dict(request.query_params)
        try:
            selection, _ = _selection(data.refresh(), params)
        except ValueError as exc:
            return render("message.html", request, title="Bad selection", message=str(exc), code=400)
        return render("bulk.html", request, params=params, selection=selection, count=len(selection),
                      action=params.get("action", ""), limit=BULK_MAX)

    @app.post("/bulk")
    async def bulk(request: Request):
        checked = await decision_form(request)
        if isinstance(checked, Response):
            return checked
        form, who = checked
        try:
            selection, decisions_of = _selection(data.refresh(), form)
            if str(len(selection)) != form.get("count", ""):
                raise ValueError(f"the selection now has {len(selection)} rows, not the {form.get('count')} you "
                                 "confirmed (the run changed); review it again")
            if len(selection) > BULK_MAX:
                raise ValueError(f"{len(selection)} rows is over the limit of {BULK_MAX} per bulk decision")
            note = " ".join(("bulk " + form.get("note", "")).split())[:200]
            store.extend(decisions_of(who, note, client(request)))
        except ValueError as exc:
            return render("message.html", request, title="Not recorded", message=str(exc), code=400)
        return render("message.html", request, title="Recorded",
                      message=f"{len(selection)} {form.get('action')} decisions recorded by {who}.")

    return app


def _topic_tuple(topic: dict[str, Any]) -> str:
    """A topic decision's ``target``: the topic's (key, value) pairs as JSON."""
    return json.dumps([[a["key"], a["value"]] for a in topic["attributes"]], ensure_ascii=False)


def _safe_back(back: str) -> str:
    """A local path to return to after a form (never another site)."""
    return back if back.startswith("/") and not back.startswith("//") and "\\" not in back else "/"


def _selection(d: ReviewData, params: dict[str, str]) -> tuple[list[dict[str, Any]], Any]:
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


async def _form(request) -> dict[str, str] | None:
    """A small urlencoded form body as {field: first value}; None for anything else.

    Parsed with the standard library instead of adding python-multipart: these forms never upload files.
    A body over ``MAX_FORM_BYTES`` is refused (413) from its Content-Length, or while it streams in,
    before it is held in memory.
    """
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = await read_body(request, MAX_FORM_BYTES, "form body")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items()}


def _decision_for(state: ReviewState, key: str, value: str) -> list[Decision]:
    """The decisions in force about one value (status and mapping), latest first."""
    target = (key_form(key), normalize_value(value))
    found = [d for d in (state.status.get(target), state.mapping.get(target)) if d is not None]
    return sorted(found, key=lambda d: d.at, reverse=True)


def _headers(response):
    for k, v in HEADERS.items():
        response.headers.setdefault(k, v)
    return response


def serve_review(layout: RunLayout, host: str = "127.0.0.1", port: int = 8766, token: str | None = None) -> None:
    """Serve the review app; beyond loopback a token is required."""
    if not is_loopback(host) and not token:
        raise ValueError(f"listening on {host} exposes the review app: pass --token (or PINLANDING_REVIEW_TOKEN)")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the review token must be at least {MIN_TOKEN_CHARS} characters "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    if not (layout.root / "vocabulary" / "vocabulary.parquet").exists():
        raise FileNotFoundError(f"no vocabulary in {layout.root}; run `pinlanding stage vocab --out {layout.root}` first")
    import uvicorn

    uvicorn.run(create_app(layout, token=token), host=host, port=port, log_level="warning")
