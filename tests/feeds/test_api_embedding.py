"""The feed API's embeddings: the NumPy MiniLM gives sentence-transformers' vectors; the cache batches, bounds
itself, and survives a restart through its file."""
from __future__ import annotations

import numpy as np
import pytest

from pinlanding.feeds.embedding import EmbeddingCache


def counting_encoder(calls: list[list[str]]):
    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        out = np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)
    return encode


def test_cache_encodes_each_text_once_in_one_batch_and_stays_bounded():
    calls: list[list[str]] = []
    cache = EmbeddingCache(counting_encoder(calls), max_entries=3)
    pinned = cache.pin(["dress", "shirt", "dress"])
    assert calls == [["dress", "shirt"]] and pinned.shape == (3, 3) and np.allclose(pinned[0], pinned[2])
    got = cache.get(["a", "b", "dress", "a"])
    assert calls[1] == ["a", "b"] and np.allclose(got[2], pinned[0]) and np.allclose(got[0], got[3])
    cache.get(["c", "d", "e"])
    assert len(cache) == 2 + 3  # pinned ones stay; the LRU part keeps the last three
    cache.get(["e"])
    assert len(calls) == 3  # still cached
    cache.get(["a"])
    assert calls[-1] == ["a"]  # evicted, so encoded again


def test_cache_file_round_trip(tmp_path):
    calls: list[list[str]] = []
    cache = EmbeddingCache(counting_encoder(calls))
    cache.pin(["dress"])
    cache.get(["word"])
    path = tmp_path / "cache.npz"
    assert cache.save(path, "m") == 2 and cache.save(path, "m") == 0  # nothing new: not rewritten
    fresh_calls: list[list[str]] = []
    fresh = EmbeddingCache(counting_encoder(fresh_calls))
    assert fresh.load(path, "other-model") == 0 and fresh.load(path, "m") == 2
    assert np.array_equal(fresh.pin(["dress"]), cache.pin(["dress"])) and np.array_equal(fresh.get(["word"]),
                                                                                        cache.get(["word"]))
    assert fresh_calls == []  # everything came from the file
    assert EmbeddingCache(counting_encoder([])).load(tmp_path / "missing.npz", "m") == 0


@pytest.mark.slow
def test_numpy_minilm_matches_sentence_transformers():
    from pinlanding.collections.models import load_sentence_model
    from pinlanding.feeds.embedding import load_encoder

    texts = ["red long slive dress for women", "pencil", "qwzx blorp", "Grey Striped T-shirt", "navy blue",
             "a much longer sentence about shoes and bags " * 8, "ünïcödé façade"]
    ours = load_encoder("all-MiniLM-L6-v2")(texts)
    theirs = load_sentence_model("all-MiniLM-L6-v2").encode(texts, normalize_embeddings=True)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), 384)
    assert np.abs(ours - theirs).max() < 1e-4
    single = load_encoder("all-MiniLM-L6-v2")(["pencil"])  # batching and padding change nothing
    assert np.abs(single[0] - ours[1]).max() < 1e-5


def test_concurrent_requests_share_encoder_calls():
    import asyncio
    import threading

    from pinlanding.feeds.embedding import Coalescer

    calls: list[list[str]] = []
    gate = threading.Event()
    encode = counting_encoder(calls)

    def slow(texts: list[str]) -> np.ndarray:
        gate.wait(timeout=10)  # the first call blocks until every request is waiting
        return encode(texts)

    cache = EmbeddingCache(slow)
    coalescer = Coalescer(cache)

    async def main() -> None:
        first = asyncio.ensure_future(coalescer.embed(["a"]))
        await asyncio.sleep(0.1)
        rest = [asyncio.ensure_future(coalescer.embed([w, "shared"])) for w in ("b", "c", "d")]
        await asyncio.sleep(0.1)
        gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert calls == [["a"], ["b", "c", "d", "shared"]] and coalescer.calls == 2
    assert cache.missing(["a", "b", "shared"]) == []

    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("encoder down")

    failing = Coalescer(EmbeddingCache(broken))
    with pytest.raises(RuntimeError, match="encoder down"):
        asyncio.run(failing.embed(["x"]))
