"""The embedded backend's catalogue-level pass, part by part: validated title phrases and neighbour votes.

Round 0 counts title phrases over every part (``PhraseCounts``: O(distinct phrases)); round 1, given
the validated phrases, collects the kNN voters: products with a title embedding and a known category
or gender (``Voters``). They are bounded: at most ``max_voters`` of them, hash-sampled by product id
(each part keeps those under the share ``max_voters / products``, the driver the ``max_voters``
lowest), so the driver and each apply task hold at most ``max_voters`` embeddings (50,000 x 384
float16 = 38 MB). Under the bound every voter is kept and the votes are those of the whole catalogue.
``apply`` then adds one part's ``category`` and voted ``gender`` rows.

This module is not part of the embedded rules digest: it runs on every run, so editing it needs no
re-extraction.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from pinlanding.vocab.extractors import rules
from pinlanding.vocab.extractors.base import RefineInput

KEYS = ("category", "gender")


def encode(model: str, device: str, batch_size: int, texts: list[str]) -> np.ndarray:
    """Normalized sentence embeddings (float32) of ``texts`` (the model loads once per process)."""
    from pinlanding.collections.engines import torch_device
    from pinlanding.collections.models import load_sentence_model

    return load_sentence_model(model, torch_device(device)).encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


class SentenceEncoder:
    """A Ray actor holding the sentence model for the refine pass's per-part tasks, so that the model
    loads once per stage (while the extraction job runs) rather than once in every task process."""

    def encode(self, model: str, device: str, batch_size: int, texts: list[str]) -> np.ndarray:
        return encode(model, device, batch_size, texts)


@dataclass
class PhraseCounts:
    """How many products use each title phrase (by ``rules.phrase_key``), with its surface spellings."""

    products: int = 0
    support: Counter[str] = field(default_factory=Counter)
    surfaces: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, other: "PhraseCounts") -> None:
        self.products += other.products
        self.support.update(other.support)
        for key, counts in other.surfaces.items():
            self.surfaces[key].update(counts)


@dataclass
class Voters:
    """kNN voters in catalogue order: (part index, row) order keys, sample ranks, embeddings, labels."""

    order: list[tuple[str, int]] = field(default_factory=list)
    rank: list[float] = field(default_factory=list)
    embedding: list[bytes] = field(default_factory=list)  # float16 bytes
    labels: dict[str, list[str | None]] = field(default_factory=lambda: {k: [] for k in KEYS})
    complete: int = 0  # products with both labels that had an embedding (before the bound)
    spare: list[tuple[tuple[str, int], str, str, dict[str, str]]] = field(default_factory=list)  # no vector yet

    def append(self, order: tuple[str, int], rank: float, embedding: bytes, labels: dict[str, str | None]) -> None:
        self.order.append(order)
        self.rank.append(rank)
        self.embedding.append(embedding)
        for key in KEYS:
            self.labels[key].append(labels[key])

    def take(self, keep: list[int]) -> "Voters":
        out = Voters(complete=self.complete, spare=self.spare)
        for i in keep:
            out.order.append(self.order[i])
            out.rank.append(self.rank[i])
            out.embedding.append(self.embedding[i])
            for key in KEYS:
                out.labels[key].append(self.labels[key][i])
        return out

    def matrix(self) -> np.ndarray:
        return np.stack([np.frombuffer(e, np.float16) for e in self.embedding]).astype(np.float32) \
            if self.embedding else np.zeros((0, 0), np.float32)


def _rank(product_id: str) -> float:
    """The sampling rank of a voter: a hash of its product id, uniform in [0, 1)."""
    digest = hashlib.blake2b(product_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


@dataclass
class CatalogueRefiner:
    """Two rounds of per-part statistics (phrase counts, then voters), then a per-part ``apply``.

    Its settings are the embedded extractor's (``EmbeddedExtractor.refiner`` builds it).
    """

    sentence_model: str = "all-MiniLM-L6-v2"
    device: str = "cpu"
    encode_batch_size: int = 256
    use_embeddings: bool = True
    min_support: int = 5
    min_support_share: float = 0.0003
    compound_min_share: float = 0.05
    knn_k: int = 10
    knn_min_vote: float = 0.5
    knn_min_similarity: float = 0.5
    max_voters: int = 50_000
    phrases_: PhraseCounts = field(default_factory=PhraseCounts, init=False)
    voters_: Voters = field(default_factory=Voters, init=False)
    _surface: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # memo of the top spelling
    _encoder: str = field(default="", init=False, repr=False)  # the shared encoder actor's name (shared())
    rounds = 2  # not a field: unannotated

    # ---- rounds ---------------------------------------------------------------------------------

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Inside a Ray session: one named actor loads the sentence model now and serves the per-part
        tasks' encodes (the late queries, the spare voters) until the block ends. Only for a GPU model:
        on CPUs the tasks' own encodes run in parallel, which one actor would serialize."""
        from pinlanding.collections.engines import torch_device

        if not self.use_embeddings or torch_device(self.device) != "cuda":
            yield
            return
        import ray

        self._encoder = f"pinlanding-refine-encoder-{uuid.uuid4().hex[:12]}"  # tasks find it by this name
        # no CPU or GPU reserved: it must not take a slot from the extraction job it overlaps
        actor = ray.remote(num_cpus=0, num_gpus=0)(SentenceEncoder).options(name=self._encoder).remote()
        warm = actor.encode.remote(self.sentence_model, self.device, self.encode_batch_size, ["warm-up"])
        try:
            yield
        finally:
            self._encoder = ""
            del warm
            ray.kill(actor)

    def _encode(self, texts: list[str]) -> np.ndarray:
        """:func:`encode`, through the stage's shared encoder actor while one runs (:meth:`shared`)."""
        if self._encoder:
            import ray

            return ray.get(ray.get_actor(self._encoder).encode.remote(
                self.sentence_model, self.device, self.encode_batch_size, texts))
        return encode(self.sentence_model, self.device, self.encode_batch_size, texts)

    def collect(self, step: int, part: RefineInput) -> PhraseCounts | Voters | None:
        if step == 0:
            counts = PhraseCounts(products=part.results.num_rows)
            for cands in _types(part.results):
                for phrase in cands:
                    key = rules.phrase_key(phrase)
                    counts.support[key] += 1
                    counts.surfaces[key][phrase] += 1
            return counts
        return self._collect_voters(part) if self.use_embeddings else None

    def merge(self, step: int, partials: list[Any]) -> None:
        """Fold the parts' statistics (in part order) into ``phrases_`` / ``voters_``."""
        if step == 0:
            for counts in partials:
                self.phrases_.add(counts)
            self._surface = {}
            return
        merged = Voters()
        for voters in (v for v in partials if v is not None):
            merged.complete += voters.complete
            merged.spare = (merged.spare + voters.spare)[: 50 * self.knn_k]
            for i in range(len(voters.order)):
                merged.append(voters.order[i], voters.rank[i], voters.embedding[i], {k: voters.labels[k][i] for k in KEYS})
        self._add_spare(merged)
        if len(merged.order) > self.max_voters:
            merged = merged.take(sorted(np.argsort(merged.rank, kind="stable")[: self.max_voters].tolist()))
        merged.spare = []
        self.voters_ = merged

    def apply(self, part: RefineInput) -> pa.Table:
        """The part's attributes plus ``category`` rows and the neighbour votes of its products."""
        aux = _aux(part.results)
        validated = self._validated([a.get("types", []) for a in aux])
        ids, labels, embedding = self._labelled(part, validated)
        rows: list[dict[str, Any]] = []
        for pid, (value, head, share) in zip(ids, validated):
            if value:
                rows.append(_row(pid, "category", value, "title", 0.6 + 0.35 * share, "title phrase"))
            if head and head != value:  # the compound's head noun too ("shoes" for "casual shoes")
                rows.append(_row(pid, "category", head, "title", 0.5, "head of title phrase"))
        if self.use_embeddings and ids:
            self._embed_queries(aux, labels, embedding)
            emb = _matrix(embedding)
            base = self.voters_.matrix()
            for key in KEYS:
                for i, (value, conf) in self._neighbour_votes(emb, labels[key], base, self.voters_.labels[key]).items():
                    rows.append(_row(ids[i], key, value, "neighbors", conf, f"vote of {self.knn_k} nearest titles"))
        added = pa.Table.from_pylist(rows, schema=part.attributes.schema)
        return pa.concat_tables([part.attributes, added]).combine_chunks()

    # ---- helpers --------------------------------------------------------------------------------

    def _labelled(self, part: RefineInput, validated: list[tuple[str | None, str | None, float]]
                  ) -> tuple[list[str], dict[str, list[str | None]], list[bytes]]:
        """Product ids, validated category (from ``validated``) and first gender per product, and the
        stored embeddings."""
        ids = part.results["product_id"].to_pylist()
        genders: dict[str, str] = {}
        for pid, key, value in zip(*(part.attributes[c].to_pylist() for c in ("product_id", "key", "value"))):
            if key == "gender" and pid not in genders:
                genders[pid] = value
        labels = {"category": [c[0] for c in validated], "gender": [genders.get(pid) for pid in ids]}
        return ids, labels, [e or b"" for e in part.results["embedding"].to_pylist()]

    def _embed_queries(self, aux: list[dict[str, Any]], labels: dict[str, list[str | None]],
                       embedding: list[bytes]) -> None:
        """Products whose phrase failed validation were not embedded by the actors: embed them now (few)."""
        late = [i for i, e in enumerate(embedding) if not e and any(labels[k][i] is None for k in KEYS)]
        if late:
            texts = [aux[i].get("text") or "" for i in late]
            vectors = self._encode(texts)
            for i, v in zip(late, vectors.astype(np.float16)):
                embedding[i] = v.tobytes()

    def _collect_voters(self, part: RefineInput) -> Voters:
        """This part's voters under the sampling share, the count of complete ones, and the spare ones
        (both labels, no embedding) that small catalogues embed on the driver (up to ``50 * knn_k``)."""
        aux = _aux(part.results)
        ids, labels, embedding = self._labelled(part, self._validated([a.get("types", []) for a in aux]))
        self._embed_queries(aux, labels, embedding)
        share = self.max_voters / max(self.phrases_.products, 1)
        texts = [a.get("text") or "" for a in aux]
        voters = Voters()
        for i in range(len(ids)):
            known = {k: labels[k][i] for k in KEYS}
            complete = all(v is not None for v in known.values())
            if not embedding[i]:
                if complete and len(voters.spare) < 50 * self.knn_k:
                    voters.spare.append(((part.name, i), ids[i], texts[i], known))
                continue
            voters.complete += complete
            if any(v is not None for v in known.values()):
                voters.append((part.name, i), _rank(ids[i]), embedding[i], known)
        keep = [i for i, r in enumerate(voters.rank) if r < share]
        return voters.take(keep) if len(keep) < len(voters.rank) else voters

    def _add_spare(self, voters: Voters) -> None:
        """Small catalogues: while fewer than ``50 * knn_k`` complete voters have a vector, embed more
        (the first ones in catalogue order), as the hash sample is too thin there."""
        spare = voters.spare[: max(0, 50 * self.knn_k - voters.complete)]
        if not spare:
            return
        vectors = self._encode([t for _, _, t, _ in spare])
        for (order, pid, _, known), v in zip(spare, vectors.astype(np.float16)):
            voters.append(order, _rank(pid), v.tobytes(), known)
        keep = sorted(range(len(voters.order)), key=lambda i: voters.order[i])
        fixed = voters.take(keep)
        voters.order, voters.rank, voters.embedding, voters.labels = fixed.order, fixed.rank, fixed.embedding, fixed.labels

    def _validated(self, types: list[list[str]]) -> list[tuple[str | None, str | None, float]]:
        """Per product: the longest title phrase the catalogue validates, its head word, a support score."""
        support, surfaces = self.phrases_.support, self.phrases_.surfaces
        threshold = max(self.min_support, self.min_support_share * self.phrases_.products)

        def surface(key: str) -> str:
            if key not in self._surface:
                self._surface[key] = surfaces[key].most_common(1)[0][0]
            return self._surface[key]

        out: list[tuple[str | None, str | None, float]] = []
        for cands in types:
            best: tuple[str | None, str | None, float] = (None, None, 0.0)
            if cands:
                head = rules.phrase_key(cands[0])
                for phrase in cands:
                    key = rules.phrase_key(phrase)
                    if support[key] < threshold:
                        break
                    if phrase != cands[0] and support[key] / support[head] < self.compound_min_share:
                        break
                    best = (surface(key), surface(head), min(1.0, support[key] / (10 * threshold)))
            out.append(best)
        return out

    def _neighbour_votes(self, emb: np.ndarray, known: list[str | None], voters: np.ndarray,
                         voter_values: list[str | None]) -> dict[int, tuple[str, float]]:
        """Similarity-weighted vote of the k nearest voters that know the value, for the products that do not."""
        embedded = ~np.isnan(emb[:, 0]) if emb.shape[1] else np.zeros(len(known), bool)
        query = np.flatnonzero(np.array([v is None for v in known]) & embedded)
        have = np.array([v is not None for v in voter_values], bool)
        if not len(query) or have.sum() < self.knn_k:
            return {}
        base = voters[have]
        base_values = np.array([v for v in voter_values if v is not None], dtype=object)
        out: dict[int, tuple[str, float]] = {}
        for start in range(0, len(query), 1024):  # a plain matmul top-k: exact, and bounded by max_voters
            q = query[start:start + 1024]
            sims = emb[q] @ base.T
            top = np.argpartition(-sims, self.knn_k - 1, axis=1)[:, : self.knn_k]
            for row, i in enumerate(q):
                s = sims[row, top[row]]
                if s.mean() < self.knn_min_similarity:
                    continue
                votes: Counter[str] = Counter()
                for value, weight in zip(base_values[top[row]], s):
                    votes[value] += float(weight)
                value, weight = votes.most_common(1)[0]
                share = weight / float(s.sum())
                if share >= self.knn_min_vote:
                    out[int(i)] = (value, round(0.5 * share * float(s.mean()), 4))
        return out


def _aux(results: pa.Table) -> list[dict[str, Any]]:
    """Each result's refine hints (title-phrase candidates ``types``, title ``text``), parsed."""
    return [json.loads(a) if a else {} for a in results["aux"].to_pylist()]


def _types(results: pa.Table) -> list[list[str]]:
    return [a.get("types", []) for a in _aux(results)]


def _matrix(embedding: list[bytes]) -> np.ndarray:
    """(n, d) float32; NaN rows for products without a vector."""
    dim = next((len(e) // 2 for e in embedding if e), 0)
    out = np.full((len(embedding), dim), np.nan, dtype=np.float32)
    for i, e in enumerate(embedding):
        if e:
            out[i] = np.frombuffer(e, dtype=np.float16)
    return out


def _row(pid: str, key: str, value: str, source: str, conf: float, raw: str) -> dict[str, Any]:
    return {"product_id": pid, "key": key, "value": value, "source": source, "confidence": round(float(conf), 4),
            "raw": raw}
