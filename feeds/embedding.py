"""all-MiniLM-L6-v2 in NumPy, for the feed API: the same vectors as sentence-transformers, without torch.

Importing torch and sentence-transformers costs 10-20 s on a small CPU, and one torch encode of a short
text costs ~100 ms under load; the API embeds only short phrases (vocabulary values and the words a
query parse leaves unexplained), so a NumPy forward pass of the six-layer BERT is both faster to start
(< 1 s: the packaged, digest-verified weights and tokenizer are read directly) and faster per call
(~1 ms for a word). :func:`load_encoder` returns this for the packaged MiniLM and falls back to
sentence-transformers for any other configured model. ``tests/feeds/test_api_embedding.py`` checks
that both give the same vectors.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

Encoder = Callable[[list[str]], np.ndarray]  # texts -> L2-normalized rows (float32)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # imported (and so paid for) when the model loads, see NumpyMiniLM

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


class NumpyMiniLM:
    """Mean-pooled, L2-normalized BERT sentence embeddings (the sentence-transformers recipe of MiniLM)."""

    def __init__(self, model_dir: Path, max_tokens: int = 256):
        import json

        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        cfg = json.loads((model_dir / "config.json").read_text())
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg["layer_norm_eps"])
        raw = {k.removeprefix("bert."): v.astype(np.float32, copy=False)
               for k, v in load_file(str(model_dir / "model.safetensors")).items()}
        # linear weights stored transposed and contiguous: ``h @ W`` is then one BLAS call
        self.w = {k: np.ascontiguousarray(v.T) if k.startswith("encoder.") and k.endswith(".weight") and v.ndim == 2
                  else v for k, v in raw.items()}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self(["warm up"])  # first-call costs (imports, BLAS start-up) here, not in the first query's answer

    def __call__(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.w["embeddings.word_embeddings.weight"].shape[1]), np.float32)
        encs = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encs], kind="stable")  # batch similar lengths: less padding
        out = np.zeros((len(texts), self.w["embeddings.word_embeddings.weight"].shape[1]), np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encs[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), np.int64)
            mask = np.zeros((len(idx), width), np.float32)
            for r, i in enumerate(idx):
                ids[r, :len(encs[i].ids)] = encs[i].ids
                mask[r, :len(encs[i].ids)] = 1.0
            out[idx] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, n, t = self.w, ids.shape[0], ids.shape[1]
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        d = x.shape[-1]
        hd = d // self.heads
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(name: str, h: np.ndarray) -> np.ndarray:
                flat = h.reshape(-1, h.shape[-1]) @ w[p + name + ".weight"] + w[p + name + ".bias"]
                return flat.reshape(*h.shape[:-1], flat.shape[-1])

            q, k, v = (lin(f"attention.self.{m}", x).reshape(n, t, self.heads, hd).transpose(0, 2, 1, 3)
                       for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (scores / scores.sum(-1, keepdims=True)) @ v
            ctx = ctx.transpose(0, 2, 1, 3).reshape(n, t, d)
            x = _layer_norm(lin("attention.output.dense", ctx) + x, w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], self.eps)
            h = _gelu(lin("intermediate.dense", x))
            x = _layer_norm(lin("output.dense", h) + x, w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"], self.eps)
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def load_encoder(model_name: str) -> Encoder:
    """The packaged, verified MiniLM in NumPy; any other configured model through sentence-transformers."""
    from pinlanding.collections.models import MINILM, packaged_minilm_path

    if model_name in (MINILM, f"sentence-transformers/{MINILM}"):
        return NumpyMiniLM(packaged_minilm_path())
    from pinlanding.collections.models import load_sentence_model

    model = load_sentence_model(model_name)
    return lambda texts: np.asarray(model.encode(texts, normalize_embeddings=True, batch_size=64), dtype=np.float32)


class EmbeddingCache:
    """Text -> vector, filled in batches; a bounded LRU so open-ended query words cannot grow it forever.

    ``pinned`` texts (the vocabulary, embedded at start) are never evicted. One encoder call runs at a
    time (the encoder is not assumed thread-safe); lookups of cached texts take no lock.
    """

    def __init__(self, encoder: Encoder, max_entries: int = 50_000):
        self.encoder = encoder
        self.max_entries = max_entries
        self._pinned: dict[str, np.ndarray] = {}
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0  # texts sent to the encoder (for /health and tests)
        self._saved = 0

    def pin(self, texts: Iterable[str], batch: int = 256) -> np.ndarray:
        """Embed ``texts`` (in batches; those cached already are moved, not re-encoded) and keep them for good;
        returns their rows in order."""
        texts = list(texts)
        with self._lock:
            for t in texts:
                if t not in self._pinned and t in self._lru:
                    self._pinned[t] = self._lru.pop(t)
        todo = sorted({t for t in texts if t not in self._pinned})
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            with self._lock:
                vecs = self.encoder(chunk)
                self.encoded += len(chunk)
            self._pinned.update(zip(chunk, vecs))
        dim = next(iter(self._pinned.values())).shape[0] if self._pinned else 0
        return np.stack([self._pinned[t] for t in texts]) if texts else np.zeros((0, dim), np.float32)

    def missing(self, texts: Iterable[str]) -> list[str]:
        """The texts not cached (lookups only)."""
        return [t for t in texts if t not in self._pinned and t not in self._lru]

    def get(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``: cached ones at once, the rest encoded together in one call."""
        out: list[np.ndarray | None] = []
        missing: list[str] = []
        for t in texts:
            v = self._pinned.get(t)
            if v is None:
                v = self._lru.get(t)
            if v is None:
                missing.append(t)
            out.append(v)
        if missing:
            unique = sorted(set(missing))
            with self._lock:
                vecs = self.encoder(unique)
                self.encoded += len(unique)
                for t, v in zip(unique, vecs):
                    self._lru[t] = v
                while len(self._lru) > self.max_entries:
                    self._lru.popitem(last=False)
            found = dict(zip(unique, vecs))
            out = [found[t] if v is None else v for t, v in zip(texts, out)]
        return np.stack(out) if out else np.zeros((0, 0), np.float32)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._pinned) + len(self._lru)

    def save(self, path: Path, model: str) -> int:
        """Write every cached vector (float32, so a reload gives the same answers) to ``path`` (.npz), atomically;
        returns how many. Written only when something was encoded since the last save or load."""
        from pinlanding.collections.artifacts import atomic_path

        with self._lock:
            items = list(self._pinned.items()) + list(self._lru.items())
            dirty, self._saved = self.encoded != self._saved, self.encoded
        if not dirty or not items:
            return 0
        texts = np.array([t for t, _ in items], dtype=object)
        vectors = np.stack([v for _, v in items]).astype(np.float32)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, model=np.array(model), texts=texts.astype(str), vectors=vectors)
        return len(items)

    def load(self, path: Path, model: str) -> int:
        """Read vectors saved by :meth:`save` for the same model into the LRU part; returns how many."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["model"]) != model:
                    return 0
                texts, vectors = data["texts"].tolist(), data["vectors"]
        except (OSError, ValueError, KeyError):
            return 0
        with self._lock:
            for t, v in zip(texts[-self.max_entries:], vectors[-self.max_entries:]):
                self._lru[t] = v.astype(np.float32)
        return len(texts)


class Coalescer:
    """Embeds the words of concurrent requests together: one encoder thread takes every word waiting and encodes
    them in one call. A forward pass costs about the same for one word as for eight (the weights are read from
    memory either way), so under load many requests share one call instead of queueing one call each."""

    def __init__(self, cache: EmbeddingCache, max_words: int = 256):
        self.cache = cache
        self.max_words = max_words
        self._waiting: list[tuple[list[str], Any, Any]] = []  # (words, future, its event loop)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.calls = 0  # encoder calls made (for tests)

    async def embed(self, words: list[str]) -> None:
        """Return once ``words`` are cached (raises what the encoder raised)."""
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            self._waiting.append((list(words), future, loop))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="embedding-coalescer", daemon=True)
                self._thread.start()
            self._cond.notify()
        await future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting:
                    self._cond.wait()
                taken, words = [], set()
                while self._waiting and (not taken or len(words) + len(self._waiting[0][0]) <= self.max_words):
                    item = self._waiting.pop(0)
                    taken.append(item)
                    words.update(item[0])
            error: BaseException | None = None
            try:
                todo = self.cache.missing(sorted(words))
                if todo:
                    self.calls += 1
                    self.cache.get(todo)
            except Exception as exc:  # noqa: BLE001  (handed to every waiting request)
                error = exc
            for _, future, loop in taken:
                loop.call_soon_threadsafe(_settle, future, error)


def _settle(future: Any, error: BaseException | None) -> None:
    if not future.done():
        future.set_exception(error) if error is not None else future.set_result(None)
