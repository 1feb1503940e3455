"""The search-log baseline: collections built from the queries alone, the old query-driven way.

Each distinct (normalised) query becomes a collection whose products are the catalogue items whose
title and merchant tags best match the query's words, ranked as a classic lexical engine does:
first by how many of the query's words they contain (coordination), then by TF-IDF cosine
(scikit-learn). Its attributes,
for judging, are the ones the intent parser finds in the query, so the baseline is measured with
exactly the same Precision@K as the content-first feeds.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from pinlanding.evaluation.intent import Intent, Lexicon
from pinlanding.evaluation.mapping import normalize


@dataclass
class BaselineCollection:
    query: str  # first spelling seen
    queries: int  # how many log entries normalise to it
    intent: Intent
    matched: int  # products sharing at least one word with the query
    product_ids: list[str]  # top k, plus any products tied with the k-th (ties are averaged by the metrics)
    scores: list[float]


def product_texts(titles: Sequence[str | None], tags: Sequence[Sequence[str] | None]) -> list[str]:
    """The text the old search matched against: title plus merchant tags."""
    return [" ".join([t or "", *(g or [])]) for t, g in zip(titles, tags)]


def _top(indices: np.ndarray, data: np.ndarray, k: int, max_ties: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` by score (stable on product order), extended by products tied with the k-th."""
    order = np.lexsort((indices, -data))
    if len(order) > k:
        kth = data[order[k - 1]]
        extra = int(np.sum(data[order[k:]] == kth))
        order = order[: k + min(extra, max_ties)]
    return indices[order], data[order]


def build_baseline(product_ids: Sequence[str], texts: Sequence[str], queries: Sequence[str], lexicon: Lexicon,
                   k: int = 10, chunk: int = 256, max_ties: int = 200) -> list[BaselineCollection]:
    """One collection per distinct query, products ranked by words matched, then TF-IDF cosine (< 1)."""
    if len(product_ids) != len(texts):
        raise ValueError(f"{len(product_ids)} product ids for {len(texts)} texts")
    counts: Counter = Counter()
    first: dict[str, str] = {}
    for q in queries:
        n = normalize(q)
        if n:
            counts[n] += 1
            first.setdefault(n, q)
    distinct = list(first)
    if not distinct or not product_ids:
        return []
    # one-letter words kept ("t shirt"); stop words dropped; normalise() singularises both sides alike
    stop = sorted({normalize(w) for w in ENGLISH_STOP_WORDS})
    vec = TfidfVectorizer(preprocessor=normalize, token_pattern=r"(?u)\b\w+\b", stop_words=stop,
                          sublinear_tf=True, dtype=np.float32)
    matrix = vec.fit_transform(texts).T.tocsr()
    present = matrix.copy()
    present.data[:] = 1.0
    ids = np.asarray(product_ids, dtype=object)
    out: list[BaselineCollection] = []
    for start in range(0, len(distinct), chunk):
        block = distinct[start:start + chunk]
        q = vec.transform(block)
        words = q.copy()
        words.data[:] = 1.0
        # same sparsity on both terms: the score is matched words + cosine
        sims = (words @ present + q @ matrix).tocsr()
        for row, q in enumerate(block):
            lo, hi = sims.indptr[row], sims.indptr[row + 1]
            idx, data = _top(sims.indices[lo:hi], sims.data[lo:hi], k, max_ties)
            out.append(BaselineCollection(first[q], counts[q], lexicon.parse(q)[0], hi - lo,
                                          ids[idx].tolist(), np.round(data.astype(float), 6).tolist()))
    return out
