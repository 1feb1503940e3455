"""Nearest-neighbour search over product embeddings: exact cosine, or binarized codes + Hamming distance.

``RetrievalIndex(method="exact" | "hamming").fit(ids, embeddings)`` then
``.search(queries, k) -> (ids [Q, k], scores [Q, k])``; ``save(path)`` / ``RetrievalIndex.load(path)``.

* ``exact``: cosine similarity by a matrix product over L2-normalized vectors; scores are cosines.
* ``hamming``: each vector becomes its sign bits packed into bytes (the binarized embeddings of the
  Pinterest visual-search papers: 32x smaller, XOR + popcount distances); scores are
  ``1 - 2 * hamming / bits`` (an estimate of the cosine). ``rerank=R`` re-scores the ``R * k`` nearest
  codes exactly (keeps the float vectors too).

Backends (``INDEXES``): ``numpy`` (brute force: at 10^4-10^6 products a scan is milliseconds per query
batch) and ``faiss`` (the same, with FAISS scanning the Hamming codes; see :class:`FaissIndex`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from pinlanding.collections.artifacts import AnyPath, as_path, atomic_path
from pinlanding.collections.registry import Registry

METHODS = ("exact", "hamming")
INDEXES: Registry["RetrievalIndex"] = Registry("retrieval index")


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array [n, dim], got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def binarize(x: np.ndarray) -> np.ndarray:
    """Sign bits of each row, packed: ``[n, ceil(dim / 8)]`` uint8."""
    return np.packbits(np.asarray(x) > 0, axis=1)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


@INDEXES.register("numpy")
class RetrievalIndex:
    """Exact or Hamming nearest-neighbour search (sklearn-style: params in ``__init__``, state in ``*_``)."""

    def __init__(self, method: str = "exact", rerank: int = 0, chunk: int = 1024) -> None:
        self.method = method
        self.rerank = rerank
        self.chunk = chunk

    def fit(self, ids: list[str] | np.ndarray, embeddings: np.ndarray,
            codes: np.ndarray | None = None) -> "RetrievalIndex":
        """Index ``embeddings`` (one row per id); ``codes``: their stored :func:`binarize` output, if at hand."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method '{self.method}'; known: {list(METHODS)}")
        emb = _normalize(embeddings)
        ids = np.asarray(ids, dtype=object)
        if len(ids) != len(emb):
            raise ValueError(f"{len(ids)} ids for {len(emb)} embeddings; pass one id per row")
        if len(ids) == 0:
            raise ValueError("cannot index an empty set of embeddings")
        self.ids_ = ids
        self.dim_ = emb.shape[1]
        self.vectors_ = emb if self.method == "exact" or self.rerank else None
        if codes is not None and np.shape(codes) != (len(emb), (self.dim_ + 7) // 8):
            raise ValueError(f"codes of shape {np.shape(codes)} do not match {len(emb)} embeddings of {self.dim_} dims")
        self.codes_ = (binarize(emb) if codes is None else np.asarray(codes, np.uint8)) if self.method == "hamming" else None
        return self

    def _check(self) -> None:
        if not hasattr(self, "ids_"):
            raise RuntimeError("this RetrievalIndex is not fitted yet; call fit(ids, embeddings) first")

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest items per query row: (ids ``[Q, k]`` object, scores ``[Q, k]`` float32)."""
        self._check()
        q = _normalize(queries)
        if q.shape[1] != self.dim_:
            raise ValueError(f"queries have dimension {q.shape[1]}, the index {self.dim_}")
        k = max(1, min(k, len(self.ids_)))
        out_idx, out_scores = [], []
        for start in range(0, len(q), self.chunk):
            block = q[start:start + self.chunk]
            if self.method == "exact":
                scores = block @ self.vectors_.T
                idx = _top(scores, k)
                scores = np.take_along_axis(scores, idx, 1)
            else:
                idx, scores = self._nearest_codes(binarize(block), min(len(self.ids_), k * max(1, self.rerank)))
                if self.rerank:
                    exact = np.einsum("qd,qcd->qc", block, self.vectors_[idx])
                    order = _top(exact, k)
                    idx, scores = np.take_along_axis(idx, order, 1), np.take_along_axis(exact, order, 1)
            out_idx.append(idx)
            out_scores.append(scores.astype(np.float32))
        idx = np.concatenate(out_idx)
        return self.ids_[idx], np.concatenate(out_scores)

    def _nearest_codes(self, codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` rows nearest to each query code by Hamming distance, and their estimated cosines."""
        scores = 1.0 - 2.0 * self._hamming(codes) / self.dim_
        idx = _top(scores, n)
        return idx, np.take_along_axis(scores, idx, 1)

    def _hamming(self, codes: np.ndarray, budget: int = 1 << 26) -> np.ndarray:
        """Hamming distances ``[q, n]`` by XOR + popcount, in slices of at most ``budget`` bytes."""
        step = max(1, budget // max(1, self.codes_.size))
        return np.concatenate([np.bitwise_count(codes[i:i + step, None, :] ^ self.codes_[None]).sum(-1, dtype=np.int32)
                               for i in range(0, len(codes), step)])

    def save(self, path: str | AnyPath) -> AnyPath:
        """Write the fitted index to one ``.npz`` file (atomically)."""
        self._check()
        arrays = {"ids": self.ids_.astype(str), "method": np.array(self.method), "rerank": np.array(self.rerank),
                  "dim": np.array(self.dim_)}
        if self.vectors_ is not None:
            arrays["vectors"] = self.vectors_
        if self.codes_ is not None:
            arrays["codes"] = self.codes_
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        return as_path(path)

    @classmethod
    def load(cls, path: str | AnyPath) -> "RetrievalIndex":
        path = as_path(path)
        if not path.exists():
            raise FileNotFoundError(f"no retrieval index at {path}")
        with path.open("rb") as f, np.load(f, allow_pickle=False) as z:
            index = cls(method=str(z["method"]), rerank=int(z["rerank"]))
            index.ids_ = z["ids"].astype(object)
            index.dim_ = int(z["dim"])
            index.vectors_ = z["vectors"] if "vectors" in z else None
            index.codes_ = z["codes"] if "codes" in z else None
        return index


@INDEXES.register("faiss")
class FaissIndex(RetrievalIndex):
    """:class:`RetrievalIndex` with FAISS's ``IndexBinaryFlat`` scanning the Hamming codes (faiss-cpu from PyPI).

    Measured here (2 busy cores, 128 dims, 50k products, one thread): one query 0.5 ms against numpy's 2.3 ms,
    100 queries 67 ms against 1.4 s (at 200k: 0.13 s against 6.2 s), because FAISS popcounts 64-bit words in
    registers where numpy's XOR + popcount builds a ``[queries, products, bytes]`` array. Exact
    search stays the matrix product (FAISS's ``IndexFlatIP`` measured no faster), and re-ranking is shared."""

    def __init__(self, method: str = "exact", rerank: int = 0, chunk: int = 1024, threads: int = 1) -> None:
        super().__init__(method, rerank, chunk)
        # one OpenMP thread by default: waking a thread team costs more than scanning 10^5-10^6 codes for one
        # query (46 ms against 0.5 ms per query on 2 busy cores); a server gets its parallelism
        # from concurrent requests. More threads pay off for large query batches on idle cores.
        self.threads = threads

    def _nearest_codes(self, codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss  # imported here: the numpy backend needs no FAISS

        faiss.omp_set_num_threads(self.threads)
        if getattr(self, "faiss_", None) is None:  # built on first search, so fit and load stay the base class's
            self.faiss_ = faiss.IndexBinaryFlat(self.codes_.shape[1] * 8)  # whole bytes; padding bits are 0
            self.faiss_.add(np.ascontiguousarray(self.codes_))
        dist, idx = self.faiss_.search(np.ascontiguousarray(codes), n)
        return idx.astype(np.int64), (1.0 - 2.0 * dist / self.dim_).astype(np.float32)


def embedding_matrix(table: pa.Table, column: str = "embedding") -> np.ndarray:
    """The list column ``column`` of an EMBEDDINGS table as a float32 ``[N, D]`` matrix, without a
    Python list per row (about 40x faster than ``to_pylist`` on the dev catalogue's embeddings)."""
    values = table.column(column).combine_chunks()
    if len(values) == 0:
        return np.zeros((0, 0), np.float32)
    if values.null_count:
        raise ValueError(f"{values.null_count} rows have no {column}")
    lengths = pa.compute.list_value_length(values)
    dim = int(pa.compute.min(lengths).as_py())
    if dim != pa.compute.max(lengths).as_py():
        raise ValueError(f"{column} vectors differ in length")
    return np.array(values.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(values), dim)  # writable


def recall_vs_exact(embeddings: np.ndarray, queries: np.ndarray, k: int = 10, rerank: int = 0) -> float:
    """Mean overlap of Hamming top-k with exact top-k (Recall@k of the binarized index against exact)."""
    ids = np.arange(len(embeddings))
    exact, _ = RetrievalIndex("exact").fit(ids, embeddings).search(queries, k)
    approx, _ = RetrievalIndex("hamming", rerank=rerank).fit(ids, embeddings).search(queries, k)
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)]))
