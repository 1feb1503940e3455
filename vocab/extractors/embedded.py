"""The offline default backend: text rules, image colours, MiniLM embeddings and catalogue statistics.

What it sees: the title, description, merchant tags and brand (matched against general-knowledge
tables of colour, pattern, material, gender, occasion, season, fit, sleeve, neck, style, shape and
feature words), and the image's pixels (the named colours of the product region, which only corroborate a
colour the text names: a studio background or a print is not the product's colour; the dual encoder
reads colour from the photo where the text names none). What it cannot see:
anything a vision model would read from the picture beyond colour (shape, pattern, material), and
words outside its tables. The product type (``category``) is open-vocabulary: the last content words
of the title, kept only when enough of the catalogue uses the same phrase; products whose title gives
no validated type, or no gender, take the vote of their nearest neighbours by MiniLM title embedding.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pinlanding.vocab.extractors import rules
from pinlanding.vocab.extractors.base import EXTRACTORS, Outcome, batch_rows, outcomes_to_batch
from pinlanding.vocab.extractors.catalogue import CatalogueRefiner, encode
from pinlanding.vocab.parsing import Attribute, canonical_value

_RULE_FILES = ("lexicon.py", "rules.py", "pixels.py", "embedded.py")
# Where each key is looked for, with the confidence a match gets there. A sleeve or neckline that only the
# description names is right 86-89% of the time on the dev labels, but stays just below feeds.min_confidence, as a
# material does (PURE_MATERIAL): alone it ranks, and it is what the encoder's rows on that key are trusted by
# (assign.key_trust), yet it does not publish a page alone. At 0.8 it published 700 more collections at P@10 0.898
# against 0.916; at 0.65 the collections keep their P@10 and the encoder adds 8.8% of the graph instead of 7.9%.
_TEXT_KEYS: dict[str, tuple[tuple[str, float], ...]] = {
    "color": (("title", 0.9), ("lead", 0.5)),
    "gender": (("title", 0.95), ("tags", 0.8)),
    "pattern": (("title", 0.9), ("lead", 0.6)),
    "material": (("title", 0.9),),
    "occasion": (("title", 0.85), ("tags", 0.8)),
    "season": (("title", 0.85), ("tags", 0.8)),
    "fit": (("title", 0.85), ("description", 0.5)),
    "sleeve": (("title", 0.85), ("description", 0.65)),
    "neck": (("title", 0.85), ("lead", 0.65)),
    "style": (("title", 0.8), ("lead", 0.4)),
    "shape": (("title", 0.8), ("lead", 0.5)),
    "feature": (("title", 0.85), ("lead", 0.5)),
}
# Confidence of a material named only in the description (see text_attributes), by how it is stated. On the
# dev labels the whole of the fabric ("100% cotton") was right 87% of the time, after a cue ("made of",
# "fabric:") 60%, the main fibre of a stated mix ("60% cotton, 40% polyester") or a blend 30-43%. The whole
# fabric still stays below feeds.min_confidence: stated alone it published as many wrong pages as right
# ones for fibres other than cotton (polyester collections at P@10 0.69), so it ranks first, not alone.
PURE_MATERIAL, DESCRIPTION_MATERIAL, MIXED_MATERIAL = 0.65, 0.6, 0.4
_PROSE = ("lead", "description")  # running text, where words have their everyday senses
LEAD_CHARS = 300  # the description's opening, where it describes the product itself


def rules_version() -> str:
    """Digest of the rule code and tables: editing them invalidates cached extractions."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in _RULE_FILES:
        h.update((here / name).read_bytes())
    return f"rules-{h.hexdigest()[:12]}"


_canonical = lru_cache(maxsize=1 << 16)(canonical_value)  # pure; the same few values recur on every product


def _add(found: dict[tuple[str, str], Attribute], key: str, value: str, source: str, conf: float,
         raw: str = "") -> None:
    value = _canonical(key, value)
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
    title, text = row["title"] or "", row["description"] or ""
    description, lead = rules.without_boilerplate(text), rules.without_boilerplate(text[:LEAD_CHARS])
    tags = " ; ".join(json.loads(row["merchant_tags"] or "[]"))
    title_tokens = rules.strip_brand(rules.tokens(title), row.get("brand") or "")
    title_text = " ".join(title_tokens)  # brand names describe nothing ("Red Tape" shoes are not red)
    texts = {"title": title_text, "lead": lead, "description": description, "tags": tags}
    found: dict[tuple[str, str], Attribute] = {}
    for key, places in _TEXT_KEYS.items():
        for place, conf in places:
            for rank, (value, phrase) in enumerate(rules.match(key, texts[place], prose=place in _PROSE)):
                _add(found, key, value, "description" if place == "lead" else place, conf - 0.1 * min(rank, 3), phrase)
    # A material the description alone names is often a part's (lining, sole, trim) or one fibre of a mix: like
    # every key's description evidence, it stays below feeds.min_confidence, so a collection publishes it only
    # where the title or the encoder confirms it
    shares = rules.fibre_shares(description)
    for rank, (value, phrase) in enumerate(rules.material_mentions(description)):
        stated = PURE_MATERIAL if shares.get(value) == 100 else MIXED_MATERIAL if value in shares else DESCRIPTION_MATERIAL
        _add(found, "material", value, "description", stated - 0.1 * min(rank, 3), phrase)
    if rules.is_blend(description):
        _add(found, "material", "blended", "description", MIXED_MATERIAL, "fibre mix")
    if row.get("brand"):
        _add(found, "brand", row["brand"], "merchant", 1.0, row["brand"])
    if row.get("image_colors"):  # pixels corroborate a colour the text names; never a value on their own
        named = {value for key, value in found if key == "color"}
        for name, share in json.loads(row["image_colors"])["colors"]:
            if share >= 0.2 and name in named:
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
                 knn_min_similarity: float = 0.5, knn_reference_share: float = 0.15,
                 knn_max_voters: int = 50_000) -> None:
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
        self.knn_max_voters = knn_max_voters  # bound of the voters held by the refine pass (catalogue.py)

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
        return encode(self.sentence_model, self.device, self.encode_batch_size, texts)

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

    # ---- catalogue-level pass (vocab/extractors/catalogue.py) -------------------------------------

    def refiner(self) -> CatalogueRefiner:
        """Validated title phrases as ``category``, then neighbour votes for missing category / gender."""
        return CatalogueRefiner(self.sentence_model, self.device, self.encode_batch_size, self.use_embeddings,
                                self.min_support, self.min_support_share, self.compound_min_share, self.knn_k,
                                self.knn_min_vote, self.knn_min_similarity, self.knn_max_voters)
