"""RetrievalIndex: exact and Hamming search, recall against exact, persistence, errors."""
from __future__ import annotations

import numpy as np
import pytest

from pinlanding.encoders.index import RetrievalIndex, binarize, recall_vs_exact


@pytest.fixture
def clustered():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 64))
    x = np.repeat(centers, 50, axis=0) + 0.3 * rng.normal(size=(1000, 64))
    return [f"p{i}" for i in range(1000)], x.astype(np.float32)


def test_exact_search_finds_itself_first_with_cosine_scores(clustered):
    ids, x = clustered
    index = RetrievalIndex("exact").fit(ids, x)
    found, scores = index.search(x[:5], k=3)
    assert list(found[:, 0]) == ids[:5]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_hamming_search_recalls_most_of_exact_and_reranking_helps(clustered):
    ids, x = clustered
    plain = recall_vs_exact(x, x[:100], k=10)
    reranked = recall_vs_exact(x, x[:100], k=10, rerank=4)
    assert plain > 0.3
    assert reranked >= plain and reranked > 0.6
    h = RetrievalIndex("hamming").fit(ids, x)
    found, scores = h.search(x[:5], k=1)
    assert list(found[:, 0]) == ids[:5] and np.allclose(scores[:, 0], 1.0)


def test_binarize_packs_sign_bits():
    codes = binarize(np.array([[1.0, -1, 2, -3, 0.5, 0.1, -0.2, 4, 1]]))
    assert codes.shape == (1, 2) and codes.dtype == np.uint8
    assert codes[0, 0] == 0b10101101 and codes[0, 1] == 0b10000000


def test_save_and_load_round_trip(clustered, tmp_path):
    ids, x = clustered
    for method in ("exact", "hamming"):
        index = RetrievalIndex(method).fit(ids, x)
        loaded = RetrievalIndex.load(index.save(tmp_path / f"{method}.npz"))
        a, sa = index.search(x[:7], k=4)
        b, sb = loaded.search(x[:7], k=4)
        assert (a == b).all() and np.allclose(sa, sb)


def test_errors_name_the_problem(clustered):
    ids, x = clustered
    with pytest.raises(ValueError, match="known: \\['exact', 'hamming'\\]"):
        RetrievalIndex("faiss").fit(ids, x)
    with pytest.raises(RuntimeError, match="not fitted"):
        RetrievalIndex().search(x[:1])
    with pytest.raises(ValueError, match="one id per row"):
        RetrievalIndex().fit(ids[:3], x)
    with pytest.raises(ValueError, match="dimension"):
        RetrievalIndex().fit(ids, x).search(np.ones((1, 3)))
    with pytest.raises(FileNotFoundError):
        RetrievalIndex.load("/nonexistent/index.npz")


def test_embedding_matrix_reads_the_list_column_as_a_writable_matrix():
    import pyarrow as pa

    from pinlanding.encoders.index import embedding_matrix

    table = pa.table({"embedding": pa.chunked_array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0]]], pa.list_(pa.float32()))})
    m = embedding_matrix(table)
    assert m.dtype == np.float32 and m.tolist() == [[1, 2], [3, 4], [5, 6]]
    m /= 2  # callers normalise in place
    assert embedding_matrix(table.slice(0, 0)).shape == (0, 0)
    with pytest.raises(ValueError, match="differ in length"):
        embedding_matrix(pa.table({"embedding": [[1.0], [1.0, 2.0]]}))


def test_faiss_backend_finds_what_numpy_finds(clustered):
    from pinlanding.encoders.index import INDEXES

    ids, x = clustered
    plain, reranked = ([INDEXES.create(name, method="hamming", rerank=rerank).fit(ids, x).search(x[:50], k=10)
                        for name in ("numpy", "faiss")] for rerank in (0, 4))
    assert np.allclose(plain[0][1], plain[1][1], atol=1e-5)  # the same distances; ids may differ where they tie
    assert list(reranked[1][0][:, 0]) == ids[:50]
    assert abs(reranked[0][1].mean() - reranked[1][1].mean()) < 0.01  # candidates differ only at ties
