"""The read-only feed API for the search team (FastAPI): a query -> collection mapping, versions, caching, exports.

``create_app(layout, cfg)`` loads the published feeds once; ``serve_api`` runs it with uvicorn on
``serve.host``/``serve.port`` (127.0.0.1:8765 by default; ``pinlanding serve --host/--port``).

* ``GET /search?q=`` maps a query to a collection (:mod:`pinlanding.feeds.matching`): ``match`` exact,
  partial or none, the matched and unmet attributes, the words left unexplained, and a calibrated
  confidence. ``POST /search/batch`` maps up to ``serve.max_batch`` queries at once.
* ``GET /topics`` lists collections with filters (``?color=red&category=dress&min_size=20``), ``/topics/{slug}``
  and ``/topics/{slug}/feed`` read one (feed items carry image and product URLs where the catalogue has
  them; ``/images/{product_id}`` serves the catalogue's photo). An old slug (a merged duplicate's, or one
  from a recorded earlier version) answers 301.
* Every response carries the run id (``X-Run-Id``: a digest of the published feeds, :mod:`.versions`);
  cacheable ones also ``ETag``, ``Last-Modified`` and ``Cache-Control``, and a request whose
  ``If-None-Match`` holds the current ETag (or whose ``If-Modified-Since`` is not older than the feeds)
  gets 304. ``GET /changes?since=RUN`` lists what changed since a recorded version.
* ``GET /export.ndjson`` and ``/export.parquet`` stream every collection with its ranked products.
* CORS is off unless ``serve.cors_origins`` names origins. Every bad input is a 4xx JSON error
  ``{"error": ..., "detail": ...}``.

The OpenAPI spec is served at ``/openapi.json`` and kept in ``feeds/openapi.json`` (:func:`export_openapi`).
"""
from __future__ import annotations

import asyncio
import gc
import hashlib
import re
import threading
import time
from contextlib import asynccontextmanager
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import numpy as np
from fastapi import Body, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from pinlanding.collections.artifacts import AnyPath, as_path, read_json, read_table, write_json
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.net import is_loopback
from pinlanding.collections.parts import count_rows, is_parted, part_files, select_rows
from pinlanding.collections.schemas import PRODUCTS, VOCAB
from pinlanding.evaluation.mapping import attr_key, family_of, normalize
from pinlanding.feeds import export, versions
from pinlanding.feeds.build import read_feeds
from pinlanding.feeds.config import ServeConfig
from pinlanding.feeds.embedding import Coalescer, EmbeddingCache, load_encoder
from pinlanding.feeds.visual_api import (PhotoEncoder, VisualLoader, VisualSearch, add_visual_routes,
                                         visual_index_digest)

if TYPE_CHECKING:  # pragma: no cover  (imported in the warm-up thread: the intent parser's imports are slow)
    from pinlanding.feeds.matching import QueryMatcher, Result

Encoder = Callable[[list[str]], np.ndarray]  # texts -> L2-normalized rows
SPEC_PATH = Path(__file__).resolve().parent / "openapi.json"
API_VERSION = "2"
SLUG = PathParam(..., min_length=1, max_length=200, description="collection slug or topic_id")
OPTIONAL_PRODUCT_COLUMNS = {"url": "product_url", "product_url": "product_url", "image_url": "image_url"}
UNCACHED_PATHS = ("/health", "/images/", "/versions")  # answers that change while one version is served


# -- response models (the OpenAPI document; handlers build plain dicts) -----------------------------------------
class Attribute(BaseModel):
    key: str
    value: str


class Topic(BaseModel):
    topic_id: str
    slug: str
    title: str | None
    query: str | None
    attributes: list[Attribute]
    judge_score: float | None
    size: int
    aliases: list[str]


class TopicPage(BaseModel):
    run_id: str
    total: int
    offset: int
    limit: int
    filters: dict[str, str]
    items: list[Topic]


class TopicDoc(Topic):
    run_id: str


class FeedItem(BaseModel):
    rank: int
    product_id: str
    score: float
    title: str | None
    brand: str | None
    price: float | None
    currency: str | None
    image_url: str | None = Field(description="the catalogue's image URL, else this API's /images/{product_id}")
    product_url: str | None = Field(description="the product page, where the catalogue has one")


class FeedPage(BaseModel):
    run_id: str
    topic: Topic
    total: int
    offset: int
    limit: int
    items: list[FeedItem]


class QueryAttribute(BaseModel):
    key: str = Field(description="attribute family (category, colour, material, ...)")
    value: str = Field(description="canonical value")


class MatchedAttribute(QueryAttribute):
    collection_value: str = Field(description="the collection's value (broader than the query's when via=broader)")
    via: str = Field(description="exact | broader | embedding")


class EmbeddedWord(QueryAttribute):
    word: str
    similarity: float


class Alternative(BaseModel):
    collection: Topic
    match: str
    confidence: float
    unmet: list[QueryAttribute]


class SearchResult(BaseModel):
    run_id: str
    query: str
    match: str = Field(description="exact | partial | none")
    confidence: float = Field(description="calibrated probability that the collection is right or an honest partial")
    coverage: float = Field(description="weighted share of the query's attributes the collection meets (product type "
                                        "3, colour and brand 1, ...; a broader value half)")
    collection: Topic | None
    matched: list[MatchedAttribute]
    unmet: list[QueryAttribute] = Field(description="attributes the query asks for that the collection does not")
    unexplained: list[str] = Field(description="content words neither the parse nor the embedding explained")
    embedded: list[EmbeddedWord] = Field(description="words explained by embedding, and what they were read as")
    other_items: list[QueryAttribute] = Field(description="attributes of other items or details the query names "
                                                          "(\"... with black jeans\"): reported, not matched")
    pending: list[str] = Field(description="words still being embedded (longer than serve.embed_wait_ms): answered "
                                           "without them, not cached; ask again for the final answer")
    alternatives: list[Alternative]


class BatchRequest(BaseModel):
    queries: list[str] = Field(..., min_length=1, description="up to serve.max_batch queries")
    detail: bool = Field(False, description="full answers (as /search) instead of the compact form")


class BatchItem(BaseModel):
    query: str
    match: str
    confidence: float
    coverage: float
    topic_id: str | None
    slug: str | None
    unmet: list[QueryAttribute]


class BatchResult(BaseModel):
    run_id: str
    count: int
    seconds: float
    results: list[dict[str, Any]] = Field(description="BatchItem per query (SearchResult with detail=true), in order")


class Change(BaseModel):
    topic_id: str
    slug: str
    title: str | None


class Changed(Change):
    fields: list[str]
    products_added: int
    products_removed: int
    size: int
    previous_slug: str | None = None


class Changes(BaseModel):
    since: str
    since_published_at: str
    run_id: str
    published_at: str
    added: list[Change]
    removed: list[Change]
    changed: list[Changed]
    unchanged: int


class Version(BaseModel):
    run_id: str
    published_at: str
    collections: int
    current: bool


class Versions(BaseModel):
    run_id: str
    versions: list[Version]


class Health(BaseModel):
    status: str
    run_id: str
    published_at: str
    collections: int
    products: int
    search: str = Field(description="ready | warming | failed")
    search_ready_seconds: float | None
    embedding: str = Field(description="the sentence model for unexplained words, or off")


class Error(BaseModel):
    error: str
    detail: Any


# -- data ----------------------------------------------------------------------------------------------------
def _topic(f: dict[str, Any]) -> dict[str, Any]:
    return {"topic_id": f["topic_id"], "slug": f["slug"], "title": f["title"], "query": f["query"],
            "attributes": [{"key": a["key"], "value": a["value"]} for a in f["attributes"] or []],
            "judge_score": f["judge_score"], "size": f["size"], "aliases": list(f.get("aliases") or [])}


def _read_products(layout: RunLayout, shown: set[str]) -> dict[str, dict[str, Any]]:
    """The catalogue rows the feeds show, with the optional URL columns when the catalogue has them."""
    import pyarrow as pa

    found = PRODUCTS
    try:
        files = part_files(layout.products) if is_parted(layout.products) else [layout.products]
        if files:
            import pyarrow.parquet as pq

            from pinlanding.collections.artifacts import arrow_source

            source, fs = arrow_source(as_path(files[0]))
            found = pq.read_schema(source, filesystem=fs)
    except (OSError, ValueError):
        pass
    optional = [c for c in OPTIONAL_PRODUCT_COLUMNS if c in found.names or c in PRODUCTS.names]
    extra = [pa.field(c, pa.string()) for c in optional if c not in PRODUCTS.names]  # beyond the schema
    schema = pa.schema(list(PRODUCTS) + extra) if extra else PRODUCTS
    columns = ["product_id", "title", "brand", "price", "currency", "image_path"] + optional
    rows = select_rows(layout.products, schema, "product_id", shown, columns).to_pylist()
    out = {}
    for p in rows:
        for c in optional:
            p[OPTIONAL_PRODUCT_COLUMNS[c]] = p.pop(c) or p.get(OPTIONAL_PRODUCT_COLUMNS[c])
        out[p["product_id"]] = p
    return out


def _read_vocabulary(layout: RunLayout) -> list[dict[str, Any]]:
    try:
        return read_table(layout.vocabulary, VOCAB).to_pylist()
    except (FileNotFoundError, OSError, ValueError):
        return []


def normalise_query(text: str) -> str:
    """Whitespace-collapsed query text (what the API answers for, and echoes)."""
    return re.sub(r"\s+", " ", text).strip()


def load_matcher(layout: RunLayout, feeds: list[dict[str, Any]], cfg: ServeConfig,
                 encoder: Encoder | None = None) -> "QueryMatcher":
    """The query matcher over ``feeds`` with the run's vocabulary; embeds with ``encoder`` (default: the
    configured sentence model, NumPy MiniLM when it is the packaged one) unless ``cfg.embed_words`` is off."""
    from pinlanding.feeds.matching import QueryMatcher

    cache = None
    if cfg.embed_words:
        cache = EmbeddingCache(encoder or load_encoder(cfg.sentence_model), cfg.embedding_cache_words)
    return QueryMatcher(feeds, _read_vocabulary(layout), cache, embed_threshold=cfg.embed_threshold,
                        embed_category_threshold=cfg.embed_category_threshold,
                        max_embedded_words=cfg.max_embedded_words, embed_scope=cfg.embed_scope)


class FeedStore:
    """Published feeds held in memory: lookups by slug or topic id, old keys to redirect, filters, versions."""

    def __init__(self, layout: RunLayout, cfg: ServeConfig, feeds: list[dict[str, Any]] | None = None):
        self.feeds = read_feeds(layout) if feeds is None else feeds
        shown = {p["product_id"] for f in self.feeds for p in f["products"]}
        self.products = _read_products(layout, shown) if shown else {}
        self.catalogue_size = count_rows(layout.products) if as_path(layout.products).exists() else 0
        self.run_id = versions.run_id(self.feeds)
        self.published = versions.published_at(layout)
        self.snapshot = versions.snapshot(self.feeds, self.run_id, self.published)
        self._history: dict[str, dict[str, Any]] = {self.run_id: self.snapshot}
        self._diffs: dict[str, dict[str, Any]] = {}
        self._history_lock = threading.Lock()
        self._listed = float("-inf")
        self.versions_dir = versions.versions_folder(layout, cfg.versions_dir)
        if cfg.record_versions:
            try:
                versions.record(self.versions_dir, self.snapshot)
            except OSError as exc:  # a read-only run folder still serves; /changes then knows fewer versions
                print(f"warning: could not record feed version {self.run_id} in {self.versions_dir}: {exc}")
        self.by_key = {f["topic_id"]: f for f in self.feeds} | {f["slug"]: f for f in self.feeds}
        # old keys -> the current slug: merged duplicates' slugs, slugs of earlier recorded versions
        self.redirects: dict[str, str] = {}
        for f in self.feeds:
            for alias in f.get("aliases") or []:
                if alias not in self.by_key:
                    self.redirects[alias] = f["slug"]
        for old, new in versions.redirects(self.snapshot, self.history().values()).items():
            self.redirects.setdefault(old, new)
        # dropped collections' slugs (tombstones of the feeds stage): 410 instead of 404
        changes = read_json(as_path(layout.feeds).parent / "changes.json", default={}) or {}
        self.gone = set(changes.get("gone") or []) - set(self.by_key) - set(self.redirects)
        self.canon = [frozenset(attr_key(a["key"], a["value"]) for a in f["attributes"] or []) for f in self.feeds]
        self.with_attr: dict[tuple[str, str], set[int]] = {}
        for i, canon in enumerate(self.canon):
            for a in canon:
                self.with_attr.setdefault(a, set()).add(i)
        self.filter_keys = sorted({a["key"] for f in self.feeds for a in f["attributes"] or []}
                                  | {family_of(a["key"]) or a["key"] for f in self.feeds for a in f["attributes"] or []})

    def history(self, max_age: float = 10.0) -> dict[str, dict[str, Any]]:
        """Every recorded version. The folder is listed again once the last listing is ``max_age`` seconds old
        (another server may have recorded a version since); files already read are not read again."""
        with self._history_lock:
            if time.monotonic() - self._listed > max_age:
                self._history.update(versions.load(self.versions_dir, skip=set(self._history)))
                self._listed = time.monotonic()
            return dict(self._history)

    def changes(self, since: str) -> dict[str, Any]:
        with self._history_lock:
            if since not in self._diffs:
                self._diffs[since] = versions.diff(self._history[since], self.snapshot)
            return self._diffs[since]

    def item(self, rank: int, p: dict[str, Any]) -> dict[str, Any]:
        info = self.products.get(p["product_id"], {})
        image = info.get("image_url") or (f"/images/{p['product_id']}" if info.get("image_path") else None)
        return {"rank": rank, "product_id": p["product_id"], "score": p["score"], "title": info.get("title"),
                "brand": info.get("brand"), "price": info.get("price"), "currency": info.get("currency"),
                "image_url": image, "product_url": info.get("product_url")}

    def export_row(self, f: dict[str, Any]) -> dict[str, Any]:
        return {"run_id": self.run_id, **_topic(f),
                "products": [self.item(r, p) for r, p in enumerate(f["products"], start=1)]}

    def filter(self, q: str | None, attrs: list[tuple[str, str]], min_size: int | None,
               max_size: int | None) -> list[dict[str, Any]]:
        term = (q or "").strip().lower()
        keep: set[int] | None = None
        for k, v in attrs:
            hits = self.with_attr.get(attr_key(k, v), set())
            keep = hits if keep is None else keep & hits
        out = []
        for i in (sorted(keep) if keep is not None else range(len(self.feeds))):
            f = self.feeds[i]
            if term and term not in (f["title"] or f["slug"]).lower():
                continue
            if min_size is not None and (f["size"] or 0) < min_size:
                continue
            if max_size is not None and (f["size"] or 0) > max_size:
                continue
            out.append(f)
        return out


class Search:
    """The query matcher, built and warmed in a background thread (reading the vocabulary and embedding its values,
    or reading those vectors from the embedding cache file), so that every other route answers at once."""

    def __init__(self, build: Callable[[], "QueryMatcher"], started: float, cache_file: AnyPath | None = None,
                 model: str = ""):
        self.build = build
        self.matcher: QueryMatcher | None = None
        self.coalescer: Coalescer | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self.started = started
        self.cache_file = cache_file
        self.model = model
        self.ready_after: float | None = None
        self.error: str | None = None
        self.done = threading.Event()

    def warm(self) -> None:
        try:
            matcher = self.build()
            if matcher.embeddings is not None and self.cache_file is not None:
                matcher.embeddings.load(Path(str(self.cache_file)), self.model)
            matcher.warm()
            if matcher.embeddings is not None:
                self.coalescer = Coalescer(matcher.embeddings)
            self.matcher = matcher
            gc.freeze()  # the matcher's tables are for good: no collection pass walks them again (see create_app)
            self.ready_after = time.monotonic() - self.started
            self.save()
        except Exception as exc:  # noqa: BLE001  (reported by /health and /search instead of killing the API)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    def embed_later(self, words: list[str]) -> "asyncio.Future[None]":
        """Embed ``words`` in the background (a reference is kept until done: the loop holds tasks weakly)."""
        assert self.coalescer is not None
        task = asyncio.ensure_future(self.coalescer.embed(words))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: "asyncio.Future[None]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            print(f"warning: embedding query words failed: {task.exception()}")

    def save(self) -> None:
        """Keep the embedded words for the next start (best effort: a read-only folder just stays cold)."""
        cache = self.matcher.embeddings if self.matcher is not None else None
        if cache is not None and self.cache_file is not None:
            try:
                cache.save(Path(str(self.cache_file)), self.model)
            except OSError as exc:
                print(f"warning: could not save the embedding cache {self.cache_file}: {exc}")

    @property
    def state(self) -> str:
        if self.error:
            return "failed"
        return "ready" if self.matcher is not None and self.matcher.ready and self.done.is_set() else "warming"

    def check(self) -> "QueryMatcher":
        state = self.state
        if state == "failed":
            raise HTTPException(503, f"query matching failed to start: {self.error}")
        if state == "warming":
            raise HTTPException(503, "query matching is warming up (embedding the vocabulary); retry shortly",
                                headers={"Retry-After": "2"})
        assert self.matcher is not None
        return self.matcher


def result_json(res: "Result", store: FeedStore, run_id: str) -> dict[str, Any]:
    best = res.best
    feeds = store.feeds
    return {
        "run_id": run_id, "query": res.query, "match": res.match, "confidence": round(res.confidence, 4),
        "coverage": round(best.features["coverage"], 4) if best else 0.0,
        "collection": _topic(feeds[best.index]) if best else None,
        "matched": best.matched if best else [],
        "unmet": [{"key": k, "value": v} for k, v in (best.unmet if best else res.parsed.attrs)],
        "unexplained": res.parsed.unexplained,
        "embedded": [{"word": w, **e} for w, e in res.parsed.embedded.items()],
        "other_items": [{"key": k, "value": v} for k, v in res.parsed.secondary],
        "pending": res.pending,
        "alternatives": [{"collection": _topic(feeds[c.index]), "match": c.kind, "confidence": round(c.confidence, 4),
                          "unmet": [{"key": k, "value": v} for k, v in c.unmet]}
                         for c in res.candidates if best is None or c.index != best.index],
    }


def compact_json(res: "Result", store: FeedStore) -> dict[str, Any]:
    f = store.feeds[res.best.index] if res.best else None
    return {"query": res.query, "match": res.match, "confidence": round(res.confidence, 4),
            "coverage": round(res.best.features["coverage"], 4) if res.best else 0.0,
            "topic_id": f["topic_id"] if f else None, "slug": f["slug"] if f else None,
            "unmet": [{"key": k, "value": v} for k, v in (res.best.unmet if res.best else res.parsed.attrs)]}


# -- HTTP caching -------------------------------------------------------------------------------------------
class VersionHeaders:
    """ASGI middleware: ``X-Run-Id`` and ``X-Content-Type-Options: nosniff`` on every response; ETag,
    Last-Modified and Cache-Control on successful GETs; 304 for a matching ``If-None-Match`` (or a fresh
    ``If-Modified-Since``) before the route runs. (Pure ASGI: a ``BaseHTTPMiddleware`` costs every request.)

    A response is a function of the run's feeds, the API version, the serve settings and the URL, so the
    ETag is a digest of those: no body is hashed, and a 304 costs nothing."""

    def __init__(self, app: Any, run_id: str, settings_digest: str, published: datetime, max_age: int):
        self.app = app
        self.run_id = run_id
        self.base = f"{run_id}:{API_VERSION}:{settings_digest}"
        self.published = published.replace(microsecond=0)
        self.last_modified = format_datetime(self.published, usegmt=True)
        self.cache_control = f"public, max-age={max_age}"

    def etag(self, scope: dict[str, Any]) -> str:
        key = f"{self.base}:{scope['path']}?{scope.get('query_string', b'').decode('latin-1')}"
        return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:  # HEAD is GET without the body (RFC 9110 9.3.2): same headers, ETag and 304
            scope = dict(scope, method="GET")
        started = time.perf_counter()
        cacheable = scope["method"] == "GET" and not scope["path"].startswith(UNCACHED_PATHS)
        etag = self.etag(scope) if cacheable else None
        if cacheable and self._not_modified(Headers(scope=scope), etag):
            timing = f"app;dur={(time.perf_counter() - started) * 1e3:.2f}"
            headers = [(b"etag", etag.encode()), (b"last-modified", self.last_modified.encode()),
                       (b"cache-control", self.cache_control.encode()), (b"x-run-id", self.run_id.encode()),
                       (b"server-timing", timing.encode()), (b"x-content-type-options", b"nosniff")]
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return


        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Run-Id"] = self.run_id
                headers["X-Content-Type-Options"] = "nosniff"  # feed texts are merchant input: never sniffed as HTML
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1e3:.2f}"
                if cacheable and message["status"] == 200 and "cache-control" not in headers:
                    headers["ETag"] = etag
                    headers["Last-Modified"] = self.last_modified
                    headers["Cache-Control"] = self.cache_control
                elif "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _not_modified(self, headers: Headers, etag: str) -> bool:
        inm = headers.get("if-none-match")
        if inm is not None:  # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or etag in tags
        ims = headers.get("if-modified-since")
        if ims:
            try:
                return parsedate_to_datetime(ims) >= self.published
            except (TypeError, ValueError):
                return False
        return False


# -- the app ----------------------------------------------------------------------------------------------------
def create_app(layout: RunLayout, cfg: ServeConfig, encoder: Encoder | None = None, load_model: bool = True,
               photo_encoder: "PhotoEncoder | None" = None, photo_size: tuple[int, int] | None = None) -> FastAPI:
    """The API over ``layout``'s feeds. ``encoder`` embeds unexplained query words (default: the configured
    sentence model); ``load_model=False`` without an encoder serves parse-only matching. ``photo_encoder``
    embeds uploaded photos resized to ``photo_size`` (default: the run's product tower, loaded on first use)."""
    started = time.monotonic()
    feeds = read_feeds(layout)
    use_cfg = cfg if (encoder is not None or load_model) else cfg.model_copy(update={"embed_words": False})
    cache_file = (versions.versions_folder(layout, cfg.versions_dir).parent / "api_embeddings.npz"
                  if cfg.cache_embeddings and not layout.remote else None)
    search = Search(lambda: load_matcher(layout, feeds, use_cfg, encoder), started, cache_file, cfg.sentence_model)
    # the vocabulary is embedded while the rest loads (products, versions): search is ready sooner
    threading.Thread(target=search.warm, name="vocabulary-embeddings", daemon=True).start()
    store = FeedStore(layout, cfg, feeds)
    visual = VisualLoader(lambda: VisualSearch(layout, feeds, cfg, photo_encoder, photo_size))
    threading.Thread(target=visual.warm, name="visual-index", daemon=True).start()
    # the feeds and the catalogue rows live as long as the app: a full garbage-collection pass over their ~10^6
    # objects stalls every request for ~50 ms, so they are moved out of the collector's sight
    gc.freeze()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        search.save()

    app = FastAPI(title="pinlanding feed API", version=API_VERSION, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Read-only access to published collections, their ranked product feeds, and a "
                              "query -> collection mapping. Every response carries the run id (X-Run-Id); "
                              "cacheable ones an ETag, and If-None-Match answers 304.")
    app.state.store, app.state.search = store, search
    errors = {404: {"model": Error}, 410: {"model": Error}, 422: {"model": Error}}

    limit_q = Query(cfg.default_page_size, ge=1, le=cfg.max_page_size, description="page size")
    offset_q = Query(0, ge=0, le=1_000_000, description="items to skip")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 503: "unavailable"}
        detail = exc.detail if not isinstance(exc.detail, dict) else exc.detail.get("detail")
        name = exc.detail.get("error") if isinstance(exc.detail, dict) else names.get(exc.status_code, "http_error")
        return JSONResponse({"error": name, "detail": detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    def invalid_request(where: str, problem: str) -> RequestValidationError:
        return RequestValidationError([{"loc": tuple(where.split(".")), "msg": problem}])

    def find(slug: str, request: Request, suffix: str = "") -> dict[str, Any] | RedirectResponse:
        if slug in store.by_key:
            return store.by_key[slug]
        if slug in store.redirects:
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"/topics/{store.redirects[slug]}{suffix}{query}", status_code=301)
        if slug in store.gone:
            raise HTTPException(410, f"collection {slug!r} was removed")
        raise HTTPException(404, f"no collection {slug!r}; list them at /topics")

    @app.get("/health", response_model=Health)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "run_id": store.run_id, "published_at": store.published.isoformat(),
                "collections": len(store.feeds), "products": store.catalogue_size, "search": search.state,
                "search_ready_seconds": round(search.ready_after, 3) if search.ready_after is not None else None,
                "embedding": cfg.sentence_model if use_cfg.embed_words else "off"})

    @app.get("/topics", response_model=TopicPage, responses=errors,
             description="Collections, filtered: `q` (title contains), `min_size`, `max_size`, and any attribute "
                         "key as a parameter (`?color=red&category=dress`; keys and values as in the collections' "
                         "attributes, spelling-insensitive: `colour=Red` finds `color=red`).")
    async def list_topics(request: Request,
                          q: str | None = Query(None, max_length=cfg.max_query_chars, description="title contains"),
                          min_size: int | None = Query(None, ge=0, description="feeds at least this long"),
                          max_size: int | None = Query(None, ge=0, description="feeds at most this long"),
                          offset: int = offset_q, limit: int = limit_q) -> JSONResponse:
        known = {"q", "min_size", "max_size", "offset", "limit"}
        attrs = []
        for key, value in request.query_params.multi_items():
            if key in known:
                continue
            if key not in store.filter_keys and normalize(key).replace(" ", "_") not in store.filter_keys:
                raise invalid_request(f"query.{key}", f"unknown filter; attribute keys: {', '.join(store.filter_keys)}")
            if not value.strip() or len(value) > 200:
                raise invalid_request(f"query.{key}", "a filter needs a value of 1-200 characters")
            attrs.append((key, value))
        hits = store.filter(q, attrs, min_size, max_size)
        return JSONResponse({"run_id": store.run_id, "total": len(hits), "offset": offset, "limit": limit,
                             "filters": {k: v for k, v in attrs}, "items": [_topic(f) for f in hits[offset:offset + limit]]})

    @app.get("/topics/{slug}", response_model=TopicDoc, responses=errors | {301: {"description": "an old slug"}})
    async def get_topic(request: Request, slug: str = SLUG) -> Any:
        f = find(slug, request)
        return f if isinstance(f, RedirectResponse) else JSONResponse({"run_id": store.run_id, **_topic(f)})

    @app.get("/topics/{slug}/feed", response_model=FeedPage, responses=errors | {301: {"description": "an old slug"}})
    async def get_feed(request: Request, slug: str = SLUG, offset: int = offset_q, limit: int = limit_q) -> Any:
        f = find(slug, request, "/feed")
        if isinstance(f, RedirectResponse):
            return f
        items = [store.item(rank, p) for rank, p in enumerate(f["products"][offset:offset + limit], start=offset + 1)]
        return JSONResponse({"run_id": store.run_id, "topic": _topic(f), "total": len(f["products"]), "offset": offset,
                             "limit": limit, "items": items})

    @app.get("/images/{product_id}", responses={404: {"model": Error}},
             response_class=FileResponse, description="The catalogue photo of a product shown in a feed.")
    async def image(product_id: str = PathParam(..., min_length=1, max_length=200)) -> FileResponse:
        info = store.products.get(product_id) or visual.product(product_id)  # shown in a feed, or a similar item
        path = Path(info["image_path"]) if info and info.get("image_path") else None
        if path is None or not path.is_file():
            raise HTTPException(404, f"no image for product {product_id!r}")
        return FileResponse(path, headers={"Cache-Control": f"public, max-age={cfg.cache_max_age}"})

    @app.get("/search", response_model=SearchResult, responses=errors | {503: {"model": Error}})
    async def search_one(q: str = Query(..., min_length=1, max_length=cfg.max_query_chars, description="free text"),
                         k: int = Query(5, ge=1, le=cfg.max_page_size, description="candidates considered and returned")
                         ) -> JSONResponse:
        text = normalise_query(q)
        if not text:
            raise invalid_request("query.q", "must contain non-space text")
        matcher = search.check()
        plan = matcher.plan([text])  # parsing and choosing take well under a millisecond: on the event loop
        missing = matcher.missing(plan)
        if missing:  # only a word never seen before costs an encoder call: off the event loop, shared with the
            # other requests waiting for one, and awaited for serve.embed_wait_ms at most (it goes on meanwhile)
            task = search.embed_later(missing)
            if cfg.embed_wait_ms > 0:
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout=cfg.embed_wait_ms / 1000)
                except asyncio.TimeoutError:
                    pass
        res = matcher.complete(plan, k, cached_only=True)[0]
        # an answer without some of its words' embeddings is not the final one: never cached
        headers = {"Cache-Control": "no-store"} if res.pending else None
        return JSONResponse(result_json(res, store, store.run_id), headers=headers)

    @app.post("/search/batch", response_model=BatchResult, responses=errors | {503: {"model": Error}},
              description=f"Map many queries at once (up to serve.max_batch = {cfg.max_batch}); each distinct "
                          "unexplained word is embedded once for the whole batch.")
    def search_batch(body: BatchRequest = Body(...)) -> JSONResponse:
        if len(body.queries) > cfg.max_batch:
            raise invalid_request("body.queries", f"at most {cfg.max_batch} queries per batch, got {len(body.queries)}")
        texts = []
        for i, q in enumerate(body.queries):
            if len(q) > cfg.max_query_chars:
                raise invalid_request(f"body.queries.{i}", f"longer than {cfg.max_query_chars} characters")
            text = normalise_query(q)
            if not text:
                raise invalid_request(f"body.queries.{i}", "must contain non-space text")
            texts.append(text)
        matcher = search.check()
        t0 = time.perf_counter()
        results = matcher.match_many(texts, 5 if body.detail else 1)
        rows = [result_json(r, store, store.run_id) if body.detail else compact_json(r, store) for r in results]
        search.save()  # the batch's new words, for the next start
        return JSONResponse({"run_id": store.run_id, "count": len(rows), "seconds": round(time.perf_counter() - t0, 3),
                             "results": rows})

    add_visual_routes(app, visual, lambda: store.run_id, cfg, errors)

    @app.get("/versions", response_model=Versions)
    async def list_versions() -> JSONResponse:
        found = store.history()
        rows = sorted(found.values(), key=lambda s: s["published_at"], reverse=True)
        return JSONResponse({"run_id": store.run_id, "versions": [
            {"run_id": s["run_id"], "published_at": s["published_at"], "collections": len(s["collections"]),
             "current": s["run_id"] == store.run_id} for s in rows]})

    @app.get("/changes", response_model=Changes, responses=errors)
    async def changes(since: str = Query(..., min_length=1, max_length=64, pattern="^[0-9a-f]+$",
                                         description="a recorded run id (see /versions)")) -> JSONResponse:
        found = store.history()
        if since not in found:
            raise HTTPException(404, {"error": "unknown_run", "detail": f"run {since!r} is not recorded; known: "
                                      f"{sorted(found)} (see /versions)"})
        return JSONResponse(store.changes(since))

    @app.get("/export.ndjson", response_class=StreamingResponse,
             description="Every collection with its ranked products, one JSON object a line (streamed).")
    async def export_ndjson() -> StreamingResponse:
        return StreamingResponse(export.ndjson(store.feeds, store.export_row), media_type="application/x-ndjson",
                                 headers={"Content-Disposition": f'attachment; filename="feeds-{store.run_id}.ndjson"'})

    @app.get("/export.parquet", response_class=StreamingResponse,
             description="Every collection with its ranked products as Parquet (streamed, a row group at a time).")
    async def export_parquet() -> StreamingResponse:
        return StreamingResponse(export.parquet(store.feeds, store.export_row), media_type="application/vnd.apache.parquet",
                                 headers={"Content-Disposition": f'attachment; filename="feeds-{store.run_id}.parquet"'})

    # what the answers depend on besides the run (where the server listens, logs or caches does not count)
    answering = cfg.model_dump_json(exclude={"host", "port", "access_log", "record_versions", "cache_embeddings",
                                             "embedding_cache_words", "versions_dir"})
    settings = hashlib.sha256((answering + visual_index_digest(layout)).encode()).hexdigest()[:12]
    if cfg.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["If-None-Match", "If-Modified-Since", "Content-Type"],
                           expose_headers=["ETag", "Last-Modified", "X-Run-Id"], max_age=600)
    app.add_middleware(VersionHeaders, run_id=store.run_id, settings_digest=settings, published=store.published,
                       max_age=cfg.cache_max_age)
    return app


def export_openapi(path: Path = SPEC_PATH) -> Path:
    """Write the API's OpenAPI spec to ``path`` (``feeds/openapi.json`` by default)."""
    return write_json(path, openapi_spec())


def openapi_spec(cfg: ServeConfig | None = None) -> dict[str, Any]:
    """The OpenAPI document of an app over an empty run: the spec does not depend on the data."""
    import tempfile

    import pyarrow as pa

    from pinlanding.collections.artifacts import write_table
    from pinlanding.collections.schemas import FEEDS

    with tempfile.TemporaryDirectory() as tmp:
        layout = RunLayout(Path(tmp))
        write_table(pa.Table.from_pylist([], schema=FEEDS), layout.feeds, FEEDS)
        write_table(pa.Table.from_pylist([], schema=PRODUCTS), layout.products, PRODUCTS)
        return create_app(layout, (cfg or ServeConfig()).model_copy(update={"record_versions": False}),
                          load_model=False).openapi()


def serve_api(layout: RunLayout, serve_cfg: ServeConfig) -> None:
    """`pinlanding serve --run DIR`: serve the feed API until interrupted."""
    import uvicorn

    if not as_path(layout.feeds).exists():
        raise FileNotFoundError(f"no feeds at {layout.feeds}; run `pinlanding run` (or the feeds stage) first")
    if not is_loopback(serve_cfg.host):
        print(f"warning: the feed API listens on {serve_cfg.host}, beyond loopback")
    app = create_app(layout, serve_cfg)
    uvicorn.run(app, host=serve_cfg.host, port=serve_cfg.port, log_level="info", access_log=serve_cfg.access_log)
