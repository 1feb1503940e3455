"""The read-only feed API for the search team (FastAPI): topics, paged feeds, free-text -> nearest topics.

``create_app(layout, cfg)`` loads the published feeds once; ``serve_api`` runs it with uvicorn on
``serve.host`` (127.0.0.1 by default). Only GET routes exist; every bad input is a 4xx JSON error
``{"error": ..., "detail": ...}``. The OpenAPI spec is served at ``/openapi.json`` and kept in
``feeds/openapi.json`` (:func:`export_openapi`).
"""
from __future__ import annotations

import ipaddress
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from fastapi import FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from pinlanding.collections.artifacts import write_json
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import count_rows, select_rows
from pinlanding.collections.schemas import PRODUCTS
from pinlanding.feeds.build import read_feeds
from pinlanding.feeds.config import ServeConfig

Encoder = Callable[[list[str]], np.ndarray]  # texts -> L2-normalized rows
SPEC_PATH = Path(__file__).resolve().parent / "openapi.json"
SLUG = PathParam(..., min_length=1, max_length=200, description="collection slug or topic_id")


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


class TopicPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[Topic]


class FeedItem(BaseModel):
    rank: int
    product_id: str
    score: float
    title: str | None
    brand: str | None
    price: float | None
    currency: str | None


class FeedPage(BaseModel):
    topic: Topic
    total: int
    offset: int
    limit: int
    items: list[FeedItem]


class Match(BaseModel):
    topic: Topic
    similarity: float


class SearchResult(BaseModel):
    query: str
    items: list[Match]


class Health(BaseModel):
    status: str
    collections: int
    products: int
    search: str  # ready | warming | off | failed


class Error(BaseModel):
    error: str
    detail: Any


def sentence_encoder(model_name: str) -> Encoder:
    """Embed texts with a sentence-transformers model (the packaged, verified MiniLM by default)."""
    from pinlanding.collections.models import load_sentence_model

    model = load_sentence_model(model_name)
    return lambda texts: np.asarray(model.encode(texts, normalize_embeddings=True, batch_size=64), dtype=np.float32)


def topic_text(f: dict[str, Any]) -> str:
    """What a topic is embedded as: its title, plus its query when that says something else."""
    title = (f["title"] or f["slug"]).strip()
    query = (f["query"] or "").strip()
    return f"{title}. {query}" if query and query.lower() != title.lower() else title


class FeedStore:
    """Published feeds held in memory: lookups by slug or topic_id, title search, nearest topics to a text.

    Topic embeddings for free-text search are computed by :meth:`warm` (a background thread started by
    :func:`create_app`), so the API answers every other route at once; /search is 503 until they are ready.
    """

    def __init__(self, feeds: list[dict[str, Any]], products: dict[str, dict[str, Any]], encoder: Encoder | None,
                 catalogue_size: int | None = None):
        self.feeds = feeds
        self.products = products  # the products the feeds show
        self.catalogue_size = len(products) if catalogue_size is None else catalogue_size
        # a merged duplicate's slug (an alias) answers with the feed it was merged into
        self.by_key = ({a: f for f in feeds for a in f.get("aliases") or []} | {f["topic_id"]: f for f in feeds}
                       | {f["slug"]: f for f in feeds})
        self._encoder = encoder
        self._vectors: np.ndarray | None = None
        self._embedded = 0
        self._error: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, layout: RunLayout, encoder: Encoder | None) -> "FeedStore":
        feeds = read_feeds(layout)
        shown = {p["product_id"] for f in feeds for p in f["products"]}  # the catalogue, part by part, for these
        products = select_rows(layout.products, PRODUCTS, "product_id", shown,
                               ["product_id", "title", "brand", "price", "currency"]).to_pylist()
        return cls(feeds, {p["product_id"]: p for p in products}, encoder, count_rows(layout.products))

    @property
    def search_state(self) -> str:
        if self._encoder is None:
            return "off"
        if self._error:
            return "failed"
        return "ready" if self._vectors is not None else "warming"

    def warm(self, chunk: int = 256) -> None:
        """Embed every topic (unique texts only), in chunks so progress is visible in /health."""
        try:
            texts = [topic_text(f) for f in self.feeds]
            unique = sorted(set(texts))
            rows: list[np.ndarray] = []
            for start in range(0, len(unique), chunk):
                with self._lock:
                    rows.append(self._encoder(unique[start:start + chunk]))
                self._embedded = min(len(unique), start + chunk)
            where = {t: i for i, t in enumerate(unique)}
            matrix = np.concatenate(rows) if rows else np.zeros((0, 1), np.float32)
            self._vectors = matrix[[where[t] for t in texts]] if texts else matrix
        except Exception as exc:  # noqa: BLE001  (reported by /health and /search instead of killing the API)
            self._error = f"{type(exc).__name__}: {exc}"

    def search_titles(self, q: str | None) -> list[dict[str, Any]]:
        term = (q or "").strip().lower()
        return [f for f in self.feeds if term in (f["title"] or f["slug"]).lower()] if term else self.feeds

    @lru_cache(maxsize=4096)  # noqa: B019  (one store per app; repeated queries are common in search traffic)
    def _embed(self, text: str) -> np.ndarray:
        with self._lock:  # one encoder call at a time
            return self._encoder([text])[0]

    def nearest(self, text: str, k: int) -> list[tuple[dict[str, Any], float]]:
        state = self.search_state
        if state == "off":
            raise HTTPException(503, "free-text search is not available: no sentence model configured")
        if state == "failed":
            raise HTTPException(503, f"free-text search failed to start: {self._error}")
        if state == "warming":
            raise HTTPException(503, f"free-text search is warming up ({self._embedded} topic texts embedded); "
                                     "retry shortly", headers={"Retry-After": "5"})
        if not len(self.feeds):
            return []
        sims = self._vectors @ self._embed(" ".join(text.lower().split()))
        order = np.lexsort((np.arange(len(sims)), -sims))[:k]  # similarity desc, then feed order
        return [(self.feeds[i], float(sims[i])) for i in order]


def _topic(f: dict[str, Any]) -> dict[str, Any]:
    return {k: f[k] for k in ("topic_id", "slug", "title", "query", "judge_score", "size")} | {
        "attributes": f["attributes"] or []}


def create_app(layout: RunLayout, cfg: ServeConfig, encoder: Encoder | None = None, load_model: bool = True) -> FastAPI:
    """The API over ``layout``'s feeds. ``encoder`` embeds texts for /search (default: ``cfg.sentence_model``)."""
    if encoder is None and load_model:
        encoder = sentence_encoder(cfg.sentence_model)
    store = FeedStore.load(layout, encoder)
    if encoder is not None:
        threading.Thread(target=store.warm, name="topic-embeddings", daemon=True).start()
    app = FastAPI(title="pinlanding feed API", version="1", docs_url=None, redoc_url=None,
                  description="Read-only access to published collections and their ranked product feeds.")
    errors = {404: {"model": Error}, 422: {"model": Error}}

    @app.middleware("http")
    async def nosniff(request: Request, call_next):  # feed texts are merchant input: never sniffed as HTML
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    limit_q = Query(cfg.default_page_size, ge=1, le=cfg.max_page_size, description="page size")
    offset_q = Query(0, ge=0, le=1_000_000, description="items to skip")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "not_found", 405: "method_not_allowed", 503: "unavailable"}
        return JSONResponse({"error": names.get(exc.status_code, "http_error"), "detail": exc.detail},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    def find(slug: str) -> dict[str, Any]:
        if slug not in store.by_key:
            raise HTTPException(404, f"no collection {slug!r}; list them at /topics")
        return store.by_key[slug]

    @app.get("/health", response_model=Health)
    def health() -> dict[str, Any]:
        return {"status": "ok", "collections": len(store.feeds), "products": store.catalogue_size,
                "search": store.search_state}

    @app.get("/topics", response_model=TopicPage, responses=errors)
    def list_topics(q: str | None = Query(None, max_length=cfg.max_query_chars, description="title contains"),
                    offset: int = offset_q, limit: int = limit_q) -> dict[str, Any]:
        hits = store.search_titles(q)
        return {"total": len(hits), "offset": offset, "limit": limit,
                "items": [_topic(f) for f in hits[offset:offset + limit]]}

    @app.get("/topics/{slug}", response_model=Topic, responses=errors)
    def get_topic(slug: str = SLUG) -> dict[str, Any]:
        return _topic(find(slug))

    @app.get("/topics/{slug}/feed", response_model=FeedPage, responses=errors)
    def get_feed(slug: str = SLUG, offset: int = offset_q, limit: int = limit_q) -> dict[str, Any]:
        f = find(slug)
        items = []
        for rank, p in enumerate(f["products"][offset:offset + limit], start=offset + 1):
            info = store.products.get(p["product_id"], {})
            items.append({"rank": rank, "product_id": p["product_id"], "score": p["score"], "title": info.get("title"),
                          "brand": info.get("brand"), "price": info.get("price"), "currency": info.get("currency")})
        return {"topic": _topic(f), "total": len(f["products"]), "offset": offset, "limit": limit, "items": items}

    @app.get("/search", response_model=SearchResult, responses=errors | {503: {"model": Error}})
    def search(q: str = Query(..., min_length=1, max_length=cfg.max_query_chars, description="free text"),
               k: int = Query(10, ge=1, le=cfg.max_page_size, description="topics to return")) -> dict[str, Any]:
        text = q.strip()
        if not text:
            raise RequestValidationError([{"loc": ("query", "q"), "msg": "must contain non-space text"}])
        return {"query": text, "items": [{"topic": _topic(f), "similarity": s} for f, s in store.nearest(text, k)]}

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
        return create_app(layout, cfg or ServeConfig(), load_model=False).openapi()


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yield its base URL; stop it on exit."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for_search(base_url: str, timeout: float = 600.0) -> str:
    """Poll ``/health`` until free-text search is no longer warming up; return its state."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        state = httpx.get(f"{base_url}/health", timeout=30).json()["search"]
        if state != "warming" or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve_api(layout: RunLayout, serve_cfg: ServeConfig) -> None:
    """`pinlanding serve --run DIR`: serve the feed API until interrupted."""
    import uvicorn

    if not layout.feeds.exists():
        raise FileNotFoundError(f"no feeds at {layout.feeds}; run `pinlanding run` (or the feeds stage) first")
    if not is_loopback(serve_cfg.host):
        print(f"warning: the feed API listens on {serve_cfg.host}, beyond loopback")
    app = create_app(layout, serve_cfg)
    uvicorn.run(app, host=serve_cfg.host, port=serve_cfg.port, log_level="info")
