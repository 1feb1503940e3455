"""The offline default backend: text rules, image colours, MiniLM embeddings and catalogue statistics.

What it sees: the title, description, merchant tags and brand (matched against general-knowledge
tables of colour, pattern, material, gender, occasion, season, fit, sleeve, neck, style and shape
words), and the image's pixels (the named colours of the product region). What it cannot see:
anything a vision model would read from the picture beyond colour (shape, pattern, material), and
words outside its tables. The product type (``category``) is open-vocabulary: the last content words
of the title, kept only when enough of the catalogue uses the same phrase; products whose title gives
no validated type, or no gender, take the vote of their nearest neighbours by MiniLM title embedding.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pinlanding.vocab.extractors import rules
from pinlanding.vocab.extractors.base import EXTRACTORS, Outcome, batch_rows, outcomes_to_batch
from pinlanding.vocab.parsing import Attribute, normalize_value

_RULE_FILES = ("lexicon.py", "rules.py", "pixels.py", "embedded.py")
# Where each key is looked for, with the confidence a match gets there.
_TEXT_KEYS: dict[str, tuple[tuple[str, float], ...]] = {
    "color": (("title", 0.9), ("lead", 0.5)),
    "gender": (("title", 0.95), ("tags", 0.8)),
    "pattern": (("title", 0.9), ("lead", 0.6)),
    "material": (("title", 0.9),),
    "occasion": (("title", 0.85), ("tags", 0.8)),
    "season": (("title", 0.85), ("tags", 0.8)),
    "fit": (("title", 0.85), ("description", 0.5)),
    "sleeve": (("title", 0.85), ("description", 0.5)),
    "neck": (("title", 0.85), ("lead", 0.6)),
    "style": (("title", 0.8), ("lead", 0.4)),
    "shape": (("title", 0.8), ("lead", 0.5)),
}
LEAD_CHARS = 300  # the description's opening, where it describes the product itself


def rules_version() -> str:
    """Digest of the rule code and tables: editing them invalidates cached extractions."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in _RULE_FILES:
        h.update((here / name).read_bytes())
    return f"rules-{h.hexdigest()[:12]}"


def _add(found: dict[tuple[str, str], Attribute], key: str, value: str, source: str, conf: float,
         raw: str = "") -> None:
    value = normalize_value(key, value)
    if not value:
        return
    old = found.get((key, value))
    if old is None:
        found[(key, value)] = Attribute(key, value, round(conf, 4), source, raw)
    elif source not in old.source.split("+"):  # agreeing evidence: combine sources, raise confidence a little
        found[(key, value)] = Attribute(key, value, round(min(1.0, max(old.confidence, conf) + 0.05), 4),
                                        f"{old.source}+{source}", old.raw)


def text_attributes(row: dict[str, Any]) -> tuple[list[Attribute], dict[str, Any]]:
    """Attributes from one prepared row's text and image colours, plus refine hints (aux)."""
    title, description = row["title"] or "", row["description"] or ""
    tags = " ; ".join(json.loads(row["merchant_tags"] or "[]"))
    title_tokens = rules.strip_brand(rules.tokens(title), row.get("brand") or "")
    title_text = " ".join(title_tokens)  # brand names describe nothing ("Red Tape" shoes are not red)
    texts = {"title": title_text, "lead": description[:LEAD_CHARS], "description": description, "tags": tags}
    found: dict[tuple[str, str], Attribute] = {}
    for key, places in _TEXT_KEYS.items():
        for place, conf in places:
            for rank, (value, phrase) in enumerate(rules.match(key, texts[place])):
                _add(found, key, value, "description" if place == "lead" else place, conf - 0.1 * min(rank, 3), phrase)
    for rank, (value, phrase) in enumerate(rules.material_mentions(description)):
        _add(found, "material", value, "description", 0.75 - 0.1 * min(rank, 3), phrase)
    if rules.is_blend(description):
        _add(found, "material", "blended", "description", 0.8, "fibre mix")
    if row.get("brand"):
        _add(found, "brand", row["brand"], "merchant", 1.0, row["brand"])
    if row.get("image_colors"):
        for name, share in json.loads(row["image_colors"])["colors"]:
            if share >= 0.2:
                _add(found, "color", name, "image", 0.25 + 0.45 * share, f"{share:.0%} of product pixels")
    aux = {"types": rules.type_candidates(title_tokens), "text": title_text}
    return list(found.values()), aux


@EXTRACTORS.register("embedded")
class EmbeddedExtractor:
    """Offline, open-vocabulary extraction; see the module docstring for what it can and cannot see."""

    name = "embedded"
    image_mode = "pixels"

    def __init__(self, sentence_model: str = "all-MiniLM-L6-v2", device: str = "cpu", encode_batch_size: int = 256,
                 use_embeddings: bool = True, min_support: int = 5, min_support_share: float = 0.0003,
                 compound_min_share: float = 0.05, knn_k: int = 10, knn_min_vote: float = 0.5,
                 knn_min_similarity: float = 0.5, knn_reference_share: float = 0.15) -> None:
        self.sentence_model = sentence_model
        self.device = device
        self.encode_batch_size = encode_batch_size
        self.use_embeddings = use_embeddings
        self.min_support = min_support
        self.min_support_share = min_support_share
        self.compound_min_share = compound_min_share
        self.knn_k = knn_k
        self.knn_min_vote = knn_min_vote
        self.knn_min_similarity = knn_min_similarity
        self.knn_reference_share = knn_reference_share
        self._model = None

    def identity(self) -> dict[str, str]:
        model = f"{self.sentence_model}|reference={self.knn_reference_share}" if self.use_embeddings else "none"
        return {"backend": self.name, "model": model, "prompt_version": rules_version()}

    def _wants_embedding(self, o: Outcome) -> bool:
        """Embed the products a vote may be needed for, and a fixed hash-sampled share as voters."""
        if o.error_kind:
            return False
        no_gender = not any(a.key == "gender" for a in o.attributes)
        in_reference = int(o.content_hash[:8], 16) / 0x100000000 < self.knn_reference_share
        return no_gender or not (o.aux or {}).get("types") or in_reference

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            from pinlanding.collections.engines import torch_device
            from pinlanding.collections.models import load_sentence_model

            self._model = load_sentence_model(self.sentence_model, torch_device(self.device))
        return self._model.encode(texts, batch_size=self.encode_batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes: list[Outcome] = []
        for row in batch_rows(batch):
            try:
                attrs, aux = text_attributes(row)
                note = f"image: {row['image_error']}" if row.get("image_error") else ""
                outcomes.append(Outcome(row["product_id"], row["content_hash"], attrs, raw=note, aux=aux))
            except Exception as exc:  # one hostile record must not fail the batch: record it
                outcomes.append(Outcome(row["product_id"], row["content_hash"], error_kind="rule_error",
                                        error=f"{type(exc).__name__}: {exc}", raw=str(row.get("title"))[:500]))
        chosen = [o for o in outcomes if self.use_embeddings and self._wants_embedding(o)]
        if chosen:
            vectors = self._encode([(o.aux or {}).get("text") or "" for o in chosen]).astype(np.float16)
            for o, v in zip(chosen, vectors):
                o.embedding = v.tobytes()
        return outcomes_to_batch(outcomes)

    # ---- catalogue-level pass -------------------------------------------------------------------

    def refine(self, products: pa.Table, attributes: pa.Table, results: pa.Table) -> pa.Table:
        """Add ``category`` (validated title phrases, else neighbour vote) and missing ``gender`` by vote."""
        ok = [r for r in results.select(["product_id", "error_kind", "aux", "embedding"]).to_pylist()
              if not r["error_kind"]]
        ids = [r["product_id"] for r in ok]
        types = [(json.loads(r["aux"]) if r["aux"] else {}).get("types", []) for r in ok]
        category = self._validated_types(types)
        rows = attributes.to_pylist()
        genders: dict[str, str] = {}
        for r in rows:
            if r["key"] == "gender" and r["product_id"] not in genders:
                genders[r["product_id"]] = r["value"]
        for pid, (value, head, share) in zip(ids, category):
            if value:
                rows.append(_row(pid, "category", value, "title", 0.6 + 0.35 * share, "title phrase"))
            if head and head != value:  # the compound's head noun too ("shoes" for "casual shoes")
                rows.append(_row(pid, "category", head, "title", 0.5, "head of title phrase"))
        if self.use_embeddings and ok:
            labels = {"category": [c[0] for c in category], "gender": [genders.get(pid) for pid in ids]}
            emb = self._embeddings(ok, [labels["category"][i] is None or labels["gender"][i] is None
                                        for i in range(len(ok))])
            for key, known in labels.items():
                for i, (value, conf) in self._neighbour_votes(emb, known).items():
                    rows.append(_row(ids[i], key, value, "neighbors", conf, f"vote of {self.knn_k} nearest titles"))
        return pa.Table.from_pylist(rows, schema=attributes.schema)

    def _embeddings(self, ok: list[dict[str, Any]], query: list[bool]) -> np.ndarray:
        """(n, d) float32; NaN rows for products without one. Queries whose phrase failed validation
        were not embedded by the actors: embed them now (few), and voters too while fewer than
        ``50 * knn_k`` have one (small catalogues, where the hash sample is too thin)."""
        late = [i for i, r in enumerate(ok) if query[i] and not r["embedding"]]
        voters = sum(1 for i, r in enumerate(ok) if not query[i] and r["embedding"])
        missing_voters = [i for i, r in enumerate(ok) if not query[i] and not r["embedding"]]
        late += missing_voters[: max(0, 50 * self.knn_k - voters)]
        if late:
            texts = [(json.loads(ok[i]["aux"]) if ok[i]["aux"] else {}).get("text") or "" for i in late]
            for i, v in zip(late, self._encode(texts).astype(np.float16)):
                ok[i]["embedding"] = v.tobytes()
        dim = next((len(r["embedding"]) // 2 for r in ok if r["embedding"]), 0)
        emb = np.full((len(ok), dim), np.nan, dtype=np.float32)
        for i, r in enumerate(ok):
            if r["embedding"]:
                emb[i] = np.frombuffer(r["embedding"], dtype=np.float16)
        return emb

    def _validated_types(self, types: list[list[str]]) -> list[tuple[str | None, str | None, float]]:
        """Per product: the longest title phrase the catalogue validates, its head word, a support score."""
        support: Counter[str] = Counter()
        surfaces: dict[str, Counter[str]] = defaultdict(Counter)
        for cands in types:
            for phrase in cands:
                key = rules.phrase_key(phrase)
                support[key] += 1
                surfaces[key][phrase] += 1
        threshold = max(self.min_support, self.min_support_share * len(types))
        def surface(key: str) -> str:
            return surfaces[key].most_common(1)[0][0]

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

    def _neighbour_votes(self, emb: np.ndarray, known: list[str | None]) -> dict[int, tuple[str, float]]:
        """Similarity-weighted vote of the k nearest products that know the value, for those that do not."""
        embedded = ~np.isnan(emb[:, 0]) if emb.shape[1] else np.zeros(len(known), bool)
        have = np.array([v is not None for v in known]) & embedded
        query = np.flatnonzero(np.array([v is None for v in known]) & embedded)
        if not len(query) or have.sum() < self.knn_k:
            return {}
        base = emb[have]
        base_values = np.array([v for v in known if v is not None], dtype=object)
        out: dict[int, tuple[str, float]] = {}
        for start in range(0, len(query), 1024):  # a plain matmul top-k: exact and fast at this scale
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


def _row(pid: str, key: str, value: str, source: str, conf: float, raw: str) -> dict[str, Any]:
    return {"product_id": pid, "key": key, "value": value, "source": source, "confidence": round(float(conf), 4),
            "raw": raw}
