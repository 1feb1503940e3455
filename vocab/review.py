"""The merchandisers' review app (FastAPI, server-rendered, no JavaScript).

Pages: ``/`` (keys, reviewer name), ``/values?key=K`` (canonical values with counts, merged variants,
sample photos, approve/reject/rename/merge/split), ``/topics`` (accept/reject), ``/image?pid=ID`` (a
product photo, only for product ids present in ``catalog/products.parquet``). Decisions go through
:class:`~pinlanding.vocab.decisions.DecisionStore` (append-only, locked) and take effect at the next
``vocab``/``topics`` run; the pages show the latest decision per value until then.

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
from pinlanding.vocab.clustering import normalize_key, normalize_value
from pinlanding.vocab.decisions import TOPIC_ACTIONS, Decision, DecisionStore, ReviewState, decisions_path

TOKEN_COOKIE, REVIEWER_COOKIE = "pl_review_token", "pl_reviewer"
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
PAGE_SIZE = 100
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
    images: dict[str, tuple[str, str]] = field(default_factory=dict)  # product_id -> (image_path, title)
    topics: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _files(self) -> list[Path]:
        folder = self.layout.root / "vocabulary"
        return [self.layout.root / "catalog" / "products.parquet", folder / "vocabulary.parquet",
                folder / "merges.parquet", folder / "dropped.parquet", folder / "attributes.parquet",
                self.layout.root / "topics" / "topics.parquet"]

    def refresh(self) -> "ReviewData":
        """Reload everything if any artifact changed; one thread at a time, and readers see whole snapshots."""
        with self._lock:
            stamp = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in self._files())
            if stamp != self._stamp:
                self._load()
                self._stamp = stamp
        return self

    def _load(self) -> None:
        products, vocab_file, merges_file, dropped_file, curated_file, topics_file = self._files()
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
            cur = read_part(curated_file, name, ATTRIBUTES, ["product_id", "key", "value"]).to_pydict()
            for pid, key, value in zip(cur["product_id"], cur["key"], cur["value"]):
                bucket = examples[(key, value)]
                if len(bucket) < self.samples and pid in part_images and part_images[pid][0]:
                    bucket.append(pid)
                    images[pid] = part_images[pid]
        topics = read_table(topics_file, TOPICS).to_pylist() if topics_file.exists() else []
        self.images, self.values, self.variants, self.rejected, self.examples, self.topics = (
            images, values, variants, rejected, examples, topics)


def create_app(layout: RunLayout, token: str | None = None, decisions_file: str | Path | None = None,
               samples: int | None = None) -> FastAPI:
    """The review app for one run folder."""
    configured, default_samples = _run_settings(layout)
    store = DecisionStore(decisions_file or decisions_path(layout, configured))
    data = ReviewData(layout, samples if samples is not None else default_samples)
    env = Environment(loader=PackageLoader("pinlanding.vocab", "templates"), autoescape=select_autoescape(default=True))
    env.filters["q"] = lambda params: urlencode(params)
    secret = secrets.token_bytes(32)
    csrf = hmac.new(secret, b"csrf", hashlib.sha256).hexdigest()
    app = FastAPI(title="pinlanding review", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

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
    def values(request: Request, key: str):
        d = data.refresh()
        if key not in d.values and key not in d.rejected:
            return render("message.html", request, title="Unknown key", message=f"No key named {key!r}.", code=404)
        rows = d.values.get(key, [])
        held = {r["value"]: json.loads(r["provenance"] or "{}").get("review_reason") for r in rows
                if r["status"] == "needs_review"}  # why the value waits for an approval
        return render("values.html", request, key=key, rows=rows, variants=d.variants, held=held,
                      examples=d.examples, images=d.images, rejected=d.rejected.get(key, []),
                      all_values=[r["value"] for r in rows])

    @app.get("/topics", response_class=HTMLResponse)
    def topics(request: Request, status: str = "", offset: int = 0):
        d = data.refresh()
        rows = [t for t in d.topics if not status or t["status"] == status]
        offset = max(0, offset)
        return render("topics.html", request, rows=rows[offset:offset + PAGE_SIZE], total=len(rows), status=status,
                      offset=offset, page=PAGE_SIZE, json=json)

    @app.get("/image")
    def image(pid: str):
        entry = data.refresh().images.get(pid)
        path = Path(entry[0]) if entry and entry[0] else None
        if path is None or path.suffix.lower() not in IMAGE_TYPES or not path.is_file():
            return Response("no image", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type=IMAGE_TYPES[path.suffix.lower()])

    @app.post("/reviewer")
    async def set_reviewer(request: Request):
        form = await _form(request)
        if form is None or not hmac.compare_digest(form.get("csrf_token", ""), csrf):
            return Response("bad form or form token; reload the page", status_code=403, media_type="text/plain")
        who = " ".join(form.get("who", "").split())[:80]
        response = RedirectResponse("/", status_code=303)
        if who:
            response.set_cookie(REVIEWER_COOKIE, who, httponly=True, samesite="strict")
        return response

    @app.post("/decide")
    async def decide(request: Request):
        form = await _form(request)
        if form is None or not hmac.compare_digest(form.get("csrf_token", ""), csrf):
            return Response("bad form or form token; reload the page", status_code=403, media_type="text/plain")
        who = request.cookies.get(REVIEWER_COOKIE, "")
        if not who:
            return render("message.html", request, title="Who are you?", code=400,
                          message="Enter your name on the start page first: every decision records who made it.")
        action, topic_id = form.get("action", ""), form.get("topic_id", "")
        key, value, target = form.get("key", ""), form.get("value", ""), form.get("target", "")
        if action in TOPIC_ACTIONS:
            topic = next((t for t in data.refresh().topics if t["topic_id"] == topic_id), None)
            if topic is None:
                return render("message.html", request, title="Unknown topic", message=topic_id, code=404)
            value = topic["title"] or ""
            target = json.dumps([[a["key"], a["value"]] for a in topic["attributes"]], ensure_ascii=False)
        try:
            store.append(Decision(action=action, who=who, key=key, value=value, target=target, topic_id=topic_id,
                                  note=form.get("note", ""), client=request.client.host if request.client else ""))
        except ValueError as exc:
            return render("message.html", request, title="Not recorded", message=str(exc), code=400)
        back = form.get("back", "/")
        safe_back = back if back.startswith("/") and not back.startswith("//") and "\\" not in back else "/"
        return RedirectResponse(safe_back, status_code=303)

    return app


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
    target = (normalize_key(key), normalize_value(value))
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
