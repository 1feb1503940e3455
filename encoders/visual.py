"""Visual search on the run's product embeddings: one index per run, similar products, a photo as the query.

The assign stage writes ``assignments/visual_index.parquet`` (schema ``VISUAL_INDEX``), a part folder
co-partitioned with the catalogue: per embedded product its normalized embedding (exact search and
re-ranking), the embedding's sign bits packed into bytes (Hamming search, the binarized features of
Pinterest's visual discovery papers) and the keys of its near-identical variants (same brand and
normalized title, or the same photo bytes). It is built one part at a time and merged when loaded; a
rerun reuses the previous part's photo digests for products whose content hash is unchanged, so only
changed products cost a read of their photo, and a rebuilt index equals a fresh one.

``VisualIndex.load(folder)`` serves it: ``similar(product_id, k)`` (the product's own variants and
repeats of one variant group left out) and ``search(vectors, k)`` (a photo's embedding,
:func:`embed_photo`). Search runs on a registered retrieval backend (``encoders.index.INDEXES``):
Hamming over the codes with exact re-ranking by default.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pinlanding.collections.artifacts import AnyPath, as_path, file_digest
from pinlanding.collections.layout import VISUAL_INDEX_FILE
from pinlanding.collections.parts import commit_parts, is_parted, iter_parts, list_parts, read_part, write_part
from pinlanding.collections.schemas import ASSIGNMENTS, EMBEDDINGS, PRODUCTS, VISUAL_INDEX
from pinlanding.encoders.index import INDEXES, binarize, embedding_matrix
from pinlanding.vocab.topics import variant_key

INDEX_NAME = VISUAL_INDEX_FILE
PRODUCT_COLUMNS = ["product_id", "brand", "title", "image_path"]
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")  # what a shopper's phone or browser sends


def image_digest(path: str | None) -> str | None:
    """SHA-256 of a local photo's bytes; None without a readable file (the feeds stage groups variants by it)."""
    if not path or not os.path.isfile(path):
        return None
    try:
        return file_digest(path)
    except OSError:
        return None


def facets_of(assignments: pa.Table) -> dict[str, list[str]]:
    """Product id -> ``key=value`` of its most confident value of each key in ``assignments`` (ASSIGNMENTS rows)."""
    best: dict[tuple[str, str], tuple[float, str]] = {}
    for pid, key, value, conf in zip(*(assignments[c].to_pylist() for c in ("product_id", "key", "value", "confidence"))):
        conf = -1.0 if conf is None else conf
        if (pid, key) not in best or (conf, value) > best[(pid, key)]:
            best[(pid, key)] = (conf, value)
    out: dict[str, list[str]] = {}
    for (pid, key), (_, value) in sorted(best.items()):
        out.setdefault(pid, []).append(f"{key}={value}")
    return out


def index_part(embeddings: pa.Table, products: pa.Table, previous: pa.Table | None = None,
               assignments: pa.Table | None = None) -> pa.Table:
    """The index rows of one part: ``embeddings`` (EMBEDDINGS rows) joined to their products (brand, title,
    photo) and their assigned attributes. Photo digests of ``previous`` rows with the same product id and
    content hash are reused."""
    if not embeddings.num_rows:  # an empty part (every part of the catalogue has one in each artifact)
        return VISUAL_INDEX.empty_table()
    pids = embeddings["product_id"].combine_chunks()
    at = pc.fill_null(pc.index_in(pids, value_set=products["product_id"].combine_chunks()), -1).to_numpy()
    cols = {c: products[c].to_pylist() for c in ("brand", "title", "image_path")}
    known: dict[tuple[str, str], str | None] = {}
    if previous is not None and previous.num_rows:
        known = dict(zip(zip(previous["product_id"].to_pylist(), previous["content_hash"].to_pylist()),
                         previous["image_digest"].to_pylist()))
    keys, digests = [], []
    for pid, chash, row in zip(pids.to_pylist(), embeddings["content_hash"].to_pylist(), at.tolist()):
        # row -1: the product left the catalogue after it was embedded (its embedding is never served)
        keys.append(variant_key(cols["brand"][row], cols["title"][row]) if row >= 0 else None)
        if (pid, chash) not in known:
            known[(pid, chash)] = image_digest(cols["image_path"][row]) if row >= 0 else None
        digests.append(known[(pid, chash)])
    vectors = embedding_matrix(embeddings)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    codes = binarize(vectors)
    facets = facets_of(assignments) if assignments is not None else {}
    flat = pa.array(vectors.ravel())
    return pa.table({"product_id": pids, "content_hash": embeddings["content_hash"].combine_chunks(),
                     "variant_key": pa.array(keys, pa.string()), "image_digest": pa.array(digests, pa.string()),
                     "facets": pa.array([facets.get(pid, []) for pid in pids.to_pylist()], pa.list_(pa.string())),
                     "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]).cast(pa.list_(pa.float32())),
                     "code": pa.array([c.tobytes() for c in codes], pa.binary())})


def build_visual_index(embeddings: AnyPath, products: AnyPath, out: AnyPath,
                       assignments: AnyPath | None = None) -> dict[str, Any]:
    """Write the index of ``embeddings`` (a part folder) to ``out``, part by part, with the attributes of
    ``assignments`` (the attribute graph, co-partitioned); an earlier index at ``out`` lends its photo digests
    (see :func:`index_part`). Returns counts for the stage summary."""
    out = as_path(out)
    previous = list_parts(out) if is_parted(out) else []
    old = {p.name for p in previous}
    written, rows, reused = [], 0, 0
    for name, emb in iter_parts(embeddings, EMBEDDINGS):
        prods = read_part(products, name, PRODUCTS, PRODUCT_COLUMNS)
        before = read_part(out, name, VISUAL_INDEX, ["product_id", "content_hash", "image_digest"]) if name in old else None
        graph = (read_part(assignments, name, ASSIGNMENTS, ["product_id", "key", "value", "confidence"])
                 if assignments is not None else None)
        table = index_part(emb, prods, before, graph)
        written.append(write_part(out, name, table, VISUAL_INDEX))
        rows += table.num_rows
        if before is not None:
            reused += int(pc.sum(pc.is_in(table["content_hash"], value_set=before["content_hash"].combine_chunks()))
                          .as_py() or 0)
    commit_parts(out, written, VISUAL_INDEX)
    return {"visual_index_rows": rows, "visual_index_reused": reused}


# Ranking bonus for each attribute a candidate shares with the query (its most confident value, from the run's
# attribute graph; never from labels). Cosines of near neighbours differ by a few hundredths, so a bonus of
# 0.5 puts products of the query's category first and 0.3 then those of its colour, and within each tier the
# embedding decides. Measured on the dev catalogue's held-out products (benchmarks/bench_visual.py, an older
# model's embeddings): cosine alone puts 0.87 of the top 10 in the query's category and 0.33 in its category
# and colour; with these weights over the 100 nearest 0.92 and 0.65, over the 300 nearest (the default
# pool) 0.92 and 0.70. Doubling the weights changed nothing: the pool bounds what can be found.
FACET_WEIGHTS = {"category": 0.5, "color": 0.3, "colour": 0.3, "gender": 0.1}
VOTERS = 10  # nearest products whose attributes stand in for those of a query without any (a photo)


class VisualIndex:
    """Nearest products by embedding (sklearn-style: params in ``__init__``, fitted state in ``*_``).

    ``backend`` names a registered retrieval index (``numpy``, ``faiss``); ``method`` is ``hamming`` (packed
    sign bits, then the ``rerank * pool`` nearest re-scored exactly) or ``exact``. The ``pool`` nearest are
    then ranked by cosine plus ``facet_weights`` of the attributes they share with the query (a product's own,
    or for a photo those most of its ``VOTERS`` nearest products have); ``{}`` ranks by cosine alone."""

    def __init__(self, backend: str = "faiss", method: str = "hamming", rerank: int = 10, pool: int = 300,
                 facet_weights: dict[str, float] | None = None) -> None:
        self.backend = backend
        self.method = method
        self.rerank = rerank
        self.pool = pool
        self.facet_weights = facet_weights

    def fit(self, table: pa.Table) -> "VisualIndex":
        """Index a whole VISUAL_INDEX table (every part)."""
        if not table.num_rows:
            raise ValueError("the visual index is empty: no product has an embedding; run the assign stage")
        ids = np.asarray(table["product_id"].to_pylist(), dtype=object)
        vectors = embedding_matrix(table)
        codes = np.frombuffer(b"".join(table["code"].to_pylist()), np.uint8).reshape(len(ids), -1)
        self.index_ = INDEXES.create(self.backend, method=self.method, rerank=self.rerank).fit(ids, vectors, codes)
        self.ids_ = ids
        self.vectors_ = self.index_.vectors_ if getattr(self.index_, "vectors_", None) is not None else vectors
        self.row_ = {pid: i for i, pid in enumerate(ids)}
        self.variant_ = np.asarray(table["variant_key"].to_pylist(), dtype=object)
        self.digest_ = np.asarray(table["image_digest"].to_pylist(), dtype=object)
        weights = FACET_WEIGHTS if self.facet_weights is None else self.facet_weights
        self.facet_keys_ = sorted(weights)
        self.weights_ = np.array([weights[k] for k in self.facet_keys_], np.float32)
        self.facets_ = np.full((len(ids), len(self.facet_keys_)), None, dtype=object)  # [n, keys] values
        column = {k: j for j, k in enumerate(self.facet_keys_)}
        for i, found in enumerate(table["facets"].to_pylist()):
            for pair in found or []:
                key, _, value = pair.partition("=")
                if key in column:
                    self.facets_[i, column[key]] = value
        self.index_.search(vectors[:1], 1)  # builds a backend's lazy structures now, not in a first request
        return self

    @classmethod
    def load(cls, folder: AnyPath, keep: set[str] | None = None, **params: Any) -> "VisualIndex":
        """The index at ``folder`` (``assignments/visual_index.parquet``), its parts merged; ``keep``: only
        these products (e.g. those a site publishes)."""
        folder = as_path(folder)
        if not is_parted(folder):
            raise FileNotFoundError(f"no visual index at {folder}; run the assign stage")
        wanted = pa.array(sorted(keep), pa.string()) if keep is not None else None
        tables = [t if wanted is None else t.filter(pc.is_in(t["product_id"], value_set=wanted))
                  for _, t in iter_parts(folder, VISUAL_INDEX)]
        return cls(**params).fit(pa.concat_tables(tables))

    def __len__(self) -> int:
        return len(self.ids_)

    def vector(self, product_id: str) -> np.ndarray:
        if product_id not in self.row_:
            raise KeyError(product_id)
        return self.vectors_[self.row_[product_id]]

    def search(self, vectors: np.ndarray, k: int = 10, exclude: list[str | None] | None = None
               ) -> list[list[tuple[str, float]]]:
        """Per query row, the ``k`` most similar products as (product id, score), one per variant group; with
        ``exclude[i]`` (a product id), that product and its variants (same variant key or photo) are left out
        and its attributes are the query's. The score is the cosine plus the weights of the shared attributes."""
        vectors = np.atleast_2d(np.asarray(vectors, np.float32))
        out: list[list[tuple[str, float]]] = [[] for _ in range(len(vectors))]
        todo, fetch = list(range(len(vectors))), min(len(self), max(self.pool, 3 * k + 8))
        while todo:
            ids, scores = self.index_.search(vectors[todo], fetch)
            retry = []
            for q, found, cos in zip(todo, ids, scores):
                rows = np.fromiter((self.row_[p] for p in found), np.int64, len(found))
                own = self.row_.get(exclude[q]) if exclude and exclude[q] is not None else None
                out[q] = self._rank(rows, cos, k, own)
                if len(out[q]) < k and fetch < len(self):
                    retry.append(q)
            todo, fetch = retry, min(len(self), fetch * 4)
        return out

    def _rank(self, rows: np.ndarray, cos: np.ndarray, k: int, own: int | None) -> list[tuple[str, float]]:
        query = self.facets_[own] if own is not None else self._voted(rows)
        same = (self.facets_[rows] == query) & (query != None)  # noqa: E711  (elementwise over object arrays)
        score = cos + same.astype(np.float32) @ self.weights_
        seen_keys, seen_photos = set(), set()
        if own is not None:
            seen_keys.add(self.variant_[own])
            if self.digest_[own]:
                seen_photos.add(self.digest_[own])
        hits = []
        for i in np.argsort(-score, kind="stable").tolist():
            r = int(rows[i])
            key, photo = self.variant_[r], self.digest_[r]
            if r == own or key in seen_keys or (photo and photo in seen_photos):
                continue
            seen_keys.add(key)
            if photo:
                seen_photos.add(photo)
            hits.append((str(self.ids_[r]), round(float(score[i]), 6)))
            if len(hits) == k:
                break
        return hits

    def _voted(self, rows: np.ndarray) -> np.ndarray:
        """The attributes most of the nearest ``VOTERS`` products share (a key without a majority: None)."""
        near = self.facets_[rows[:VOTERS]]
        out = np.full(len(self.facet_keys_), None, dtype=object)
        for j in range(near.shape[1]):
            values = [v for v in near[:, j] if v is not None]
            if values:
                value = max(set(values), key=values.count)
                out[j] = value if 2 * values.count(value) > len(near) else None
        return out

    def similar(self, product_id: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` products most like ``product_id`` (KeyError when it is not indexed)."""
        return self.search(self.vector(product_id)[None], k, [product_id])[0]


class PhotoError(ValueError):
    """An uploaded photo that is refused: ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` at ``size`` (height, width) from an uploaded photo's bytes, or a PhotoError.

    Pillow checks it first, strictly: a known format, the header's size (at most ``max_pixels``: a
    decompression bomb is refused before a pixel is decoded) and a full decode (a truncated or corrupt
    file fails). The pixels then come from torchvision's decoders and resize, as the assign stage
    decodes catalogue photos (:func:`pinlanding.encoders.data.decode_image`), so a catalogue photo
    uploaded as it is gets the catalogue's own pixels."""
    import torch
    import torchvision.io as tv_io
    import torchvision.transforms.v2.functional as tv_f
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
                if img.width * img.height > max_pixels:
                    raise PhotoError(f"image of {img.width}x{img.height} pixels; at most {max_pixels:,} pixels", 413)
                img.load()  # a truncated or corrupt file fails here (ImageFile.LOAD_TRUNCATED_IMAGES stays off)
                if img.format in ("JPEG", "PNG", "GIF"):
                    pixels = tv_io.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                                mode=tv_io.ImageReadMode.RGB)
                else:  # a format torchvision may lack: Pillow's pixels
                    pixels = torch.from_numpy(np.asarray(img.convert("RGB"))).permute(2, 0, 1)
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoError(f"image refused as a decompression bomb: {exc}", 413) from exc
    except UnidentifiedImageError as exc:
        raise PhotoError(f"not an image in a supported format ({', '.join(UPLOAD_FORMATS)})") from exc
    except (OSError, RuntimeError, ValueError, SyntaxError) as exc:
        raise PhotoError(f"corrupt image: {type(exc).__name__}: {exc}"[:300]) from exc
    h, w = size
    if tuple(pixels.shape[1:]) != (h, w):
        pixels = tv_f.resize(pixels, [h, w], antialias=True)
    return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())


def embed_photo(bundle: Any, pixels: np.ndarray) -> np.ndarray:
    """Product-tower embeddings ``[N, D]`` of photos ``[N, H, W, 3]`` with no text (a shopper's photo has none)."""
    from pinlanding.encoders.clip import build_tokenizer

    tokens = build_tokenizer(bundle.model.spec)([""] * len(pixels))
    return bundle.encode_products(pixels, np.ones(len(pixels), bool), tokens)


def photo_size(bundle: Any) -> tuple[int, int]:
    """(height, width) the bundle's product tower reads photos at."""
    return tuple(int(x) for x in bundle.model.spec["image_size"])  # type: ignore[return-value]
