"""Value hygiene and near-duplicate clustering of one attribute key's values.

Three layers, cheapest first: :func:`sanitize_value` (reject unusable text with a reason),
:func:`normalize_value` (exact grouping: case, punctuation, spacing, a trailing plural), and
:class:`ValueClusterer` (sentence-embedding clusters, guarded so that every merge is at least
``merge_similarity`` cosine to its canonical and passes the caller's ``can_merge`` check, e.g. never
joining values seen together on products or differing by a modifier word, see :func:`lexically_distinct`).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pinlanding.collections.artifacts import AnyPath, arrow_source, as_path
from pinlanding.collections.text import singular, split_words, strip_controls

_MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")
_SEPARATORS = re.compile(r"[\s\-_/.,'’`\"()&+]+")
_SPACES = re.compile(r"\s+")


def sanitize_value(value: str | None, max_chars: int) -> tuple[str, str | None]:
    """Return ``(clean value, None)`` or ``("", reason)`` for a value that cannot be a vocabulary term.

    Reasons: ``empty``, ``too_long``, ``markup`` (HTML tags or entities), ``no_text`` (no letter or digit).
    Other scripts are kept as they are; emoji inside a word are kept, emoji-only values are ``no_text``.
    """
    if value is None:
        return "", "empty"
    clean = _SPACES.sub(" ", unicodedata.normalize("NFKC", strip_controls(str(value)))).strip()
    if not clean:
        return "", "empty"
    if len(clean) > max_chars:
        return "", "too_long"
    if _MARKUP.search(clean):
        return "", "markup"
    if not any(ch.isalnum() for ch in clean):
        return "", "no_text"
    return clean, None


def lexically_distinct(a: str, b: str) -> bool:
    """True when two values name different things however close their embeddings are.

    Sentence embeddings put a value and its modified forms close together ("Blue" / "Light Blue" at 0.90,
    "Shirt" / "Striped Shirt"), so a merge is refused when one value's words are a strict subset of the
    other's (a modifier was added) or when they carry different numbers ("3 Socks" / "5 Socks").
    """
    ta, tb = set(split_words(a, fold_plurals=True)), set(split_words(b, fold_plurals=True))
    if ta != tb and (ta < tb or tb < ta):
        return True
    return {t for t in ta if t.isdigit()} != {t for t in tb if t.isdigit()}


def normalize_value(value: str, fold_plurals: bool = True) -> str:
    """The exact-grouping form: ``"T-Shirts"``, ``"t shirt"`` and ``"Tshirt"`` all become ``"tshirt"``."""
    text = unicodedata.normalize("NFKC", strip_controls(str(value))).casefold()
    words = [w for w in _SEPARATORS.split(text) if w]
    if fold_plurals and words:
        words[-1] = singular(words[-1])
    return "".join(words)


# --- embeddings ---------------------------------------------------------------------------------

_CACHE_SCHEMA = pa.schema([("model", pa.string()), ("text", pa.string()), ("vector", pa.list_(pa.float32()))])


class EmbeddingCache:
    """Sentence embeddings of short strings, memoized in a Parquet file (one row per model and text)."""

    def __init__(self, model: str, path: str | AnyPath | None = None, batch_size: int = 128) -> None:
        self.model = model
        self.path = as_path(path) if path else None
        self.batch_size = batch_size
        self._vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        if self.path and self.path.exists():
            try:
                source, filesystem = arrow_source(self.path)
                table = pq.read_table(source, schema=_CACHE_SCHEMA, filesystem=filesystem)
                for m, t, v in zip(*(table.column(c).to_pylist() for c in ("model", "text", "vector"))):
                    if m == model:
                        self._vectors[t] = np.asarray(v, dtype=np.float32)
            except (OSError, pa.ArrowInvalid):  # a damaged cache is only a slower run
                self._vectors = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized embeddings, shape ``(len(texts), dim)``."""
        missing = sorted({t for t in texts if t not in self._vectors})
        if missing:
            from pinlanding.collections.models import load_sentence_model

            model = load_sentence_model(self.model)
            vecs = model.encode(missing, batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
            self._vectors.update(zip(missing, vecs.astype(np.float32)))
            self._dirty = True
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    def save(self) -> None:
        """Write the cache (atomically) if anything was added."""
        if not (self.path and self._dirty):
            return
        from pinlanding.collections.artifacts import atomic_path

        texts = sorted(self._vectors)
        table = pa.table({"model": [self.model] * len(texts), "text": texts,
                          "vector": [self._vectors[t].tolist() for t in texts]}, schema=_CACHE_SCHEMA)
        with atomic_path(self.path) as tmp:
            pq.write_table(table, tmp)
        self._dirty = False


# --- clustering ---------------------------------------------------------------------------------


class ValueClusterer:
    """Cluster one key's values; the most frequent value of each cluster becomes canonical.

    ``fit(embeddings, counts, cannot_link)`` sets ``canonical_`` (index of each value's canonical),
    ``similarity_`` (cosine to it) and ``method_`` (the clustering that ran). Proposals come from
    HDBSCAN or complete-linkage agglomerative clustering; a greedy guard then accepts a member only if
    its cosine to the canonical is at least ``merge_similarity`` and ``can_merge(i, j)`` holds for every
    value already in that cluster, so HDBSCAN's looser density clusters never merge distinct values.
    """

    def __init__(self, method: str = "auto", merge_similarity: float = 0.88, hdbscan_min_values: int = 50,
                 min_cluster_size: int = 2) -> None:
        self.method = method
        self.merge_similarity = merge_similarity
        self.hdbscan_min_values = hdbscan_min_values
        self.min_cluster_size = min_cluster_size

    def _proposals(self, emb: np.ndarray) -> np.ndarray:
        n = len(emb)
        method = self.method
        if method == "auto":
            method = "hdbscan" if n >= self.hdbscan_min_values else "agglomerative"
        self.method_ = method
        if method == "none" or n < 2:
            return np.arange(n)
        if method == "hdbscan":
            import hdbscan

            # on unit vectors euclidean distance is sqrt(2 - 2 cos): a monotone map of cosine
            labels = hdbscan.HDBSCAN(min_cluster_size=max(2, self.min_cluster_size), min_samples=1,
                                     metric="euclidean").fit_predict(emb.astype(np.float64))
            noise = labels < 0
            labels[noise] = labels.max() + 1 + np.arange(int(noise.sum()))
            return labels
        if method == "agglomerative":
            from sklearn.cluster import AgglomerativeClustering

            return AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="complete",
                                           distance_threshold=1.0 - self.merge_similarity).fit_predict(emb)
        raise ValueError(f"unknown clustering method '{self.method}'; known: ['auto', 'hdbscan', 'agglomerative', 'none']")

    def fit(self, embeddings: np.ndarray, counts: Sequence[int],
            can_merge: Callable[[int, int], bool] | None = None) -> "ValueClusterer":
        if not 0.0 < self.merge_similarity <= 1.0:
            raise ValueError(f"merge_similarity must be in (0, 1], got {self.merge_similarity}")
        emb = np.asarray(embeddings, dtype=np.float32)
        counts = np.asarray(counts)
        if len(emb) != len(counts):
            raise ValueError(f"{len(emb)} embeddings but {len(counts)} counts")
        labels = self._proposals(emb)
        n = len(emb)
        self.canonical_ = np.arange(n)
        self.similarity_ = np.ones(n, dtype=np.float32)
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            if len(members) < 2:
                continue
            members = sorted(members, key=lambda i: (-counts[i], i))
            heads: list[list[int]] = []  # each: [canonical, members...]
            for i in members:
                for group in heads:
                    sim = float(emb[i] @ emb[group[0]])
                    if sim >= self.merge_similarity and (can_merge is None or all(can_merge(i, j) for j in group)):
                        group.append(i)
                        self.canonical_[i] = group[0]
                        self.similarity_[i] = sim
                        break
                else:
                    heads.append([i])
        return self


def attach(rare: np.ndarray, kept: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """For each rare embedding, the index of its most similar kept embedding (or -1 below ``threshold``)."""
    if len(rare) == 0 or len(kept) == 0:
        return np.full(len(rare), -1), np.zeros(len(rare), dtype=np.float32)
    sims = rare @ kept.T
    best = sims.argmax(axis=1)
    score = sims[np.arange(len(rare)), best]
    return np.where(score >= threshold, best, -1), score.astype(np.float32)
