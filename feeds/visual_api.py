"""Visual search routes of the feed API: similar products, and a photo as the query.

* ``GET /products/{product_id}/similar?k=`` the ``k`` nearest products (the product's own near-identical
  variants left out, one product per variant group), each with a score and its collections; the
  product itself comes with the collections it belongs to.
* ``POST /search/image`` takes a photo as the request body (JPEG, PNG, WebP or GIF; at most
  ``serve.max_upload_bytes`` bytes and ``serve.max_upload_pixels`` pixels), embeds it with the run's
  product tower and answers with similar products and the collections they point to. An oversized body
  is 413, a decompression bomb 413, an unreadable or corrupt image 422.

Both read the run's visual index (``assignments/visual_index.parquet``, :mod:`pinlanding.encoders.visual`);
a run without one answers 503 saying which stage writes it.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pinlanding.collections.artifacts import as_path
from pinlanding.collections.http import read_body
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import is_parted, iter_parts
from pinlanding.collections.schemas import PRODUCTS
from pinlanding.feeds.config import ServeConfig

PhotoEncoder = Callable[[np.ndarray], np.ndarray]  # uint8 photos [N, H, W, 3] -> L2-normalized rows
INFO_COLUMNS = ["product_id", "title", "brand", "price", "currency", "image_path", "url"]
COLLECTION_VOTES = 50  # nearest products whose collections vote for a photo's best-matching collections


class CollectionRef(BaseModel):
    slug: str
    title: str | None


class SimilarItem(BaseModel):
    rank: int
    product_id: str
    score: float = Field(description="cosine similarity of the embeddings plus serve.visual_facet_weights of each "
                                     "attribute (category, colour, gender) shared with the query")
    title: str | None
    brand: str | None
    price: float | None
    currency: str | None
    image_url: str | None
    product_url: str | None
    collections: list[CollectionRef] = Field(description="published collections that show this product")


class Product(BaseModel):
    product_id: str
    title: str | None
    brand: str | None
    image_url: str | None
    product_url: str | None
    collections: list[CollectionRef]


class SimilarPage(BaseModel):
    run_id: str
    product: Product
    k: int
    items: list[SimilarItem]


class MatchedCollection(CollectionRef):
    score: float = Field(description="similarity-weighted share of the nearest products that this collection shows")


class PhotoResult(BaseModel):
    run_id: str
    k: int
    items: list[SimilarItem]
    collections: list[MatchedCollection]


class VisualSearch:
    """The run's visual index with the catalogue rows and collections of the indexed products; the encoder
    for photos is loaded on first use (or given: tests and benchmarks pass one)."""

    def __init__(self, layout: RunLayout, feeds: list[dict[str, Any]], cfg: ServeConfig,
                 photo_encoder: PhotoEncoder | None = None, photo_size: tuple[int, int] | None = None) -> None:
        from pinlanding.encoders.visual import VisualIndex

        self.layout, self.cfg = layout, cfg
        self.error: str | None = None
        self.index: VisualIndex | None = None
        folder = layout.visual_index
        if not is_parted(folder):
            self.error = f"this run has no visual index ({folder}); run the assign stage"
            return
        self.index = VisualIndex.load(folder, backend=cfg.visual_backend, method=cfg.visual_method,
                                      rerank=cfg.visual_rerank, facet_weights=cfg.visual_facet_weights)
        self.info = _catalogue_rows(layout, self.index.ids_)
        self.collections: dict[str, list[int]] = {}
        for i, f in enumerate(feeds):
            for p in f["products"]:
                for pid in [p["product_id"], *(p.get("variants") or [])]:
                    self.collections.setdefault(pid, []).append(i)
        self.feeds = feeds
        self._encoder, self._size = photo_encoder, photo_size
        self._batcher: PhotoBatcher | None = None
        self._lock = threading.Lock()

    def check(self) -> "VisualSearch":
        if self.index is None:
            raise HTTPException(503, self.error)
        return self

    def product(self, pid: str) -> dict[str, Any] | None:
        row = self.index.row_.get(pid) if self.index is not None else None
        return self.info[row] if row is not None else None

    def refs(self, pid: str, limit: int | None = None) -> list[dict[str, Any]]:
        found = self.collections.get(pid, [])[:limit]
        return [{"slug": self.feeds[i]["slug"], "title": self.feeds[i]["title"]} for i in found]

    def item(self, rank: int, pid: str, score: float) -> dict[str, Any]:
        info = self.product(pid) or {}
        return {"rank": rank, "product_id": pid, "score": score, "title": info.get("title"), "brand": info.get("brand"),
                "price": info.get("price"), "currency": info.get("currency"), "image_url": _image_url(pid, info),
                "product_url": info.get("url"), "collections": self.refs(pid, self.cfg.item_collections)}

    def best_collections(self, hits: list[tuple[str, float]], n: int) -> list[dict[str, Any]]:
        """Collections voted for by the products in ``hits``, each vote weighted by its similarity."""
        votes: Counter[int] = Counter()
        for pid, score in hits:
            for i in set(self.collections.get(pid, [])):
                votes[i] += max(score, 0.0)
        total = sum(max(s, 0.0) for _, s in hits) or 1.0
        return [{"slug": self.feeds[i]["slug"], "title": self.feeds[i]["title"], "score": round(v / total, 4)}
                for i, v in votes.most_common(n) if v > 0]

    def embed(self, data: bytes) -> np.ndarray:
        """A photo's embedding (PhotoError for a refused one): decoded on the request's thread, embedded
        together with the other requests' photos waiting at that moment (:class:`PhotoBatcher`)."""
        from pinlanding.encoders.visual import decode_upload

        with self._lock:
            if self._encoder is None:
                self._encoder, self._size = _bundle_encoder(self.layout)
            if self._batcher is None:
                self._batcher = PhotoBatcher(self._encoder)
        return self._batcher.embed(decode_upload(data, self._size, self.cfg.max_upload_pixels))

    def search_photo(self, data: bytes, k: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """A photo's ``k`` similar products (one per variant group) and its ``COLLECTION_VOTES`` nearest products
        (variants included: each is shown in collections of its own)."""
        vector = self.embed(data)[None]
        ids, scores = self.index.index_.search(vector, COLLECTION_VOTES)
        return self.index.search(vector, k)[0], list(zip(ids[0].tolist(), scores[0].tolist()))


class PhotoBatcher:
    """Embeds the photos of concurrent requests together: one thread takes every photo waiting (up to
    ``max_batch``) and runs one forward pass for them. A pass over 16 photos costs a few times one photo's
    on CPU (the weights are read once), and the model's pass uses every core already, so parallel passes
    would only contend for them. (feeds.embedding.Coalescer does this for query words, through a cache.)"""

    def __init__(self, encode: PhotoEncoder, max_batch: int = 32) -> None:
        self.encode = encode
        self.max_batch = max_batch
        self._waiting: list[list[Any]] = []  # [pixels, done event, embedding, error]
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.passes = 0  # forward passes made (for tests and benchmarks)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """The embedding of one photo ``[H, W, 3]`` (blocks until its batch is done)."""
        item = [pixels, threading.Event(), None, None]
        with self._cond:
            self._waiting.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="photo-batcher", daemon=True)
                self._thread.start()
            self._cond.notify()
        item[1].wait()
        if item[3] is not None:
            raise item[3]
        return item[2]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting:
                    self._cond.wait()
                batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
            try:
                self.passes += 1
                for item, vector in zip(batch, self.encode(np.stack([b[0] for b in batch]))):
                    item[2] = vector
            except Exception as exc:  # noqa: BLE001  (handed to every waiting request)
                for item in batch:
                    item[3] = exc
            for item in batch:
                item[1].set()


class VisualLoader:
    """Loads the :class:`VisualSearch` once (``warm`` in a background thread at start, so other routes answer
    meanwhile); calling it returns the loaded one, waiting for the load, or answers 503 when loading failed."""

    def __init__(self, build: Callable[[], VisualSearch]) -> None:
        self.build = build
        self._value: VisualSearch | None = None
        self._error: str | None = None
        self._lock = threading.Lock()

    def warm(self) -> None:
        with self._lock:
            if self._value is None and self._error is None:
                try:
                    self._value = self.build()
                except (OSError, ValueError, KeyError) as exc:  # a damaged index: reported by the routes
                    self._error = f"the visual index could not be loaded: {type(exc).__name__}: {exc}"

    def __call__(self) -> VisualSearch:
        self.warm()
        if self._value is None:
            raise HTTPException(503, self._error)
        return self._value

    def product(self, pid: str) -> dict[str, Any] | None:
        """A catalogue row of an indexed product, without waiting for (or failing on) the index."""
        return self._value.product(pid) if self._value is not None else None


def visual_index_digest(layout: RunLayout) -> str:
    """A digest of the visual index's listing (its parts are content-addressed), for the API's ETags."""
    from pinlanding.collections.artifacts import file_digest
    from pinlanding.collections.parts import PARTS_FILE
    listing = layout.visual_index / PARTS_FILE
    return file_digest(listing) if listing.exists() else "none"


def _image_url(pid: str, info: dict[str, Any]) -> str | None:
    return info.get("image_url") or (f"/images/{pid}" if info.get("image_path") else None)


def _catalogue_rows(layout: RunLayout, ids: np.ndarray) -> list[dict[str, Any]]:
    """The catalogue rows of ``ids`` in index order (read part by part; columns the catalogue lacks are None)."""
    wanted = pa.array(list(ids), pa.string())
    tables = []
    for _, table in iter_parts(layout.products, PRODUCTS):
        table = table.select([c for c in INFO_COLUMNS if c in table.column_names])
        tables.append(table.filter(pc.is_in(table["product_id"], value_set=wanted)))
    found = pa.concat_tables(tables) if tables else PRODUCTS.empty_table()
    by_id = {r["product_id"]: r for r in found.to_pylist()}
    return [by_id.get(pid, {}) for pid in ids.tolist()]


def _bundle_encoder(layout: RunLayout) -> tuple[PhotoEncoder, tuple[int, int]]:
    from pinlanding.encoders.bundle import load_bundle
    from pinlanding.encoders.visual import embed_photo, photo_size

    bundle = load_bundle(as_path(layout.dir("encoder")), device="cpu")
    return (lambda pixels: embed_photo(bundle, pixels)), photo_size(bundle)


def add_visual_routes(app: FastAPI, visual: Callable[[], VisualSearch], run_id: Callable[[], str],
                      cfg: ServeConfig, errors: dict[int, Any]) -> None:
    """Register the visual search routes on ``app``; ``visual`` returns the loaded :class:`VisualSearch`."""
    k_q = Query(10, ge=1, le=cfg.max_page_size, description="products to return")

    @app.get("/products/{product_id}/similar", response_model=SimilarPage, responses=errors | {503: errors[404]},
             description="Products most like this one by their embeddings (near-identical variants of it left out), "
                         "with the collections each belongs to.")
    async def similar(product_id: str = PathParam(..., min_length=1, max_length=200), k: int = k_q) -> JSONResponse:
        vs = visual().check()
        if product_id not in vs.index.row_:
            raise HTTPException(404, f"no product {product_id!r} in the visual index")
        hits = await run_in_threadpool(vs.index.similar, product_id, k)
        info = vs.product(product_id) or {}
        product = {"product_id": product_id, "title": info.get("title"), "brand": info.get("brand"),
                   "image_url": _image_url(product_id, info), "product_url": info.get("url"),
                   "collections": vs.refs(product_id)}
        return JSONResponse({"run_id": run_id(), "product": product, "k": k,
                             "items": [vs.item(r, pid, s) for r, (pid, s) in enumerate(hits, start=1)]})

    @app.post("/search/image", response_model=PhotoResult,
              responses=errors | {413: errors[404], 503: errors[404]},
              openapi_extra={"requestBody": {"required": True, "content": {
                  f"image/{kind}": {"schema": {"type": "string", "format": "binary"}}
                  for kind in ("jpeg", "png", "webp", "gif")}}},
              description="A photo as the query (the request body: JPEG, PNG, WebP or GIF, at most "
                          f"{cfg.max_upload_bytes:,} bytes and {cfg.max_upload_pixels:,} pixels): similar products "
                          "and the collections they point to.")
    async def search_image(request: Request, k: int = k_q,
                           collections: int = Query(5, ge=0, le=50, description="collections to return")
                           ) -> JSONResponse:
        from pinlanding.encoders.visual import PhotoError

        vs = visual().check()
        data = await read_body(request, cfg.max_upload_bytes, "upload")
        if not data:
            raise HTTPException(422, "the request body must be the photo's bytes (e.g. curl --data-binary @photo.jpg)")
        try:
            hits, near = await run_in_threadpool(vs.search_photo, data, k)
        except PhotoError as exc:
            raise HTTPException(exc.status, {"error": "bad_image" if exc.status == 422 else "too_large",
                                             "detail": str(exc)}) from exc
        return JSONResponse({"run_id": run_id(), "k": k,
                             "items": [vs.item(r, pid, s) for r, (pid, s) in enumerate(hits, start=1)],
                             "collections": vs.best_collections(near, collections)}, headers={"Cache-Control": "no-store"})
