"""Judges that score candidate topics (attribute tuple + generated query), registered by name.

``cooccurrence`` (the offline default) is *not* a language model and says so in every reason: it
scores coherence from the catalogue's own attribute co-occurrence (lift), plausibility as a shopping
intent from how often shoppers name the values in the real queries, and phrasing from how many of the
generated query's word pairs real shoppers type. ``openai``, ``transformers`` and ``vllm`` ask a
language model from :mod:`pinlanding.llm` "yes or no" and score P(yes); their libraries load lazily.
Judgements are cached by :class:`JudgeCache` keyed on the judge's fingerprint, the tuple and the query.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from pinlanding.collections.artifacts import AnyPath, as_path, json_digest, read_json, write_json
from pinlanding.collections.layout import resolve_data_path
from pinlanding.collections.queries import read_queries
from pinlanding.collections.registry import Registry
from pinlanding.collections.text import split_words
from pinlanding.llm import GenerationError, LanguageModel, create_model

Attrs = tuple[tuple[str, str], ...]

PROMPT = (
    "You review candidate shopping collections for an online fashion store.\n"
    "Product attributes shared by every item in the collection (JSON): {attributes}\n"
    "Proposed shopper search query (JSON string): {query}\n"
    "Do these attributes form a coherent, plausible shopping intent, and is the query phrased the way "
    "a real shopper would search for it? Answer with one word, yes or no.\nAnswer:"
)


@dataclass(frozen=True)
class Candidate:
    attributes: Attrs  # sorted (key, value) pairs
    query: str
    support: int = 0


@dataclass
class Judgement:
    score: float | None  # None: the judge could not score it (see error)
    reason: str
    backend: str
    components: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class Judge(Protocol):
    name: str

    def fingerprint(self) -> str:
        """What this judge's scores depend on (model, prompt, statistics); part of every cache key."""

    def judge(self, candidates: Sequence[Candidate]) -> list[Judgement]: ...


JUDGES: Registry[Judge] = Registry("judge")


# --- shopper queries ------------------------------------------------------------------------------

def query_tokens(text: str) -> list[str]:
    """Word tokens of a query or value, folded the same way as vocabulary values."""
    return split_words(text, fold_plurals=True)


class QueryIndex:
    """N-gram statistics of real shopper queries: how many queries contain a phrase (up to 4 words)."""

    MAX_N = 4

    def __init__(self, queries: Sequence[str]) -> None:
        self.n_queries = len(queries)
        self.phrases: Counter[tuple[str, ...]] = Counter()  # queries containing the phrase
        self.bigrams: Counter[tuple[str, str]] = Counter()  # with <s> and </s> boundaries
        for q in queries:
            toks = query_tokens(q)
            seen = {tuple(toks[i:i + n]) for n in range(1, self.MAX_N + 1) for i in range(len(toks) - n + 1)}
            self.phrases.update(seen)
            bounded = ["<s>", *toks, "</s>"]
            self.bigrams.update(set(zip(bounded, bounded[1:])))
        self.digest = json_digest(sorted(queries))

    @classmethod
    def from_tsv(cls, path: str | Path, column: str = "English query") -> "QueryIndex":
        """Read one column of a TSV with a header; undecodable bytes are replaced, short rows skipped."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"shopper queries {path} not found; set vocab.judge.queries to the TSV file")
        queries, _ = read_queries(path, column)
        if not queries:
            raise ValueError(f"shopper queries file {path} is empty")
        return cls(queries)

    def mentions(self, phrase: str) -> int:
        """Queries that contain the phrase's words consecutively (0 for phrases over 4 words)."""
        toks = tuple(query_tokens(phrase))
        return self.phrases.get(toks, 0) if 0 < len(toks) <= self.MAX_N else 0

    def phrasing(self, query: str, saturation: int = 3) -> tuple[float, list[str]]:
        """How much the query's word order looks like real queries, in [0, 1], and its unseen word pairs.

        Mean over adjacent word pairs (with start/end markers) of min(1, n(a b) / saturation) times the
        share of n(a b) among n(a b) + n(b a): "black dress" scores high, "dress black" low even when
        a few shoppers typed it.
        """
        bounded = ["<s>", *query_tokens(query), "</s>"]
        pairs = list(zip(bounded, bounded[1:]))
        if len(pairs) < 2:
            return 0.0, []
        scores = []
        for a, b in pairs:
            n, rev = self.bigrams.get((a, b), 0), self.bigrams.get((b, a), 0)
            scores.append(min(1.0, n / saturation) * n / (n + rev) if n else 0.0)
        unseen = [" ".join(p) for p, s in zip(pairs, scores) if s == 0.0]
        return sum(scores) / len(scores), unseen


# --- catalogue statistics -------------------------------------------------------------------------


@dataclass
class CooccurrenceStats:
    """Products supporting each attribute tuple (every subset of a counted tuple is counted too)."""

    n_products: int
    support: dict[Attrs, int]

    def lift_of_each(self, attrs: Attrs) -> list[tuple[tuple[str, str], float]]:
        """For each attribute a of the tuple T: n(T) N / (n(T - a) n(a)); 1 means independent."""
        n_t = self.support.get(attrs, 0)
        out = []
        for i, a in enumerate(attrs):
            rest = attrs[:i] + attrs[i + 1:]
            n_rest, n_a = self.support.get(rest, 0), self.support.get((a,), 0)
            out.append((a, n_t * self.n_products / (n_rest * n_a) if n_rest and n_a else 0.0))
        return out

    @property
    def digest(self) -> str:
        return json_digest([self.n_products, sorted((list(map(list, k)), v) for k, v in self.support.items())])


@dataclass
class JudgeContext:
    """What every judge may use besides its own options."""

    stats: CooccurrenceStats | None = None
    queries: QueryIndex | None = None
    anchor_keys: tuple[str, ...] = ()  # keys naming the product type (see CooccurrenceJudge)
    weights: dict[str, float] = field(default_factory=lambda: {"coherence": 0.4, "plausibility": 0.3, "phrasing": 0.3})


@JUDGES.register("cooccurrence")
class CooccurrenceJudge:
    """The honest offline judge: catalogue co-occurrence + real shopper queries, no language model.

    When the queries never name the tuple's product type (an anchor-key value, e.g. watches in an
    apparel-only query log), the log says nothing about that intent: plausibility and phrasing then
    take ``uncovered_score`` instead of counting as evidence against it, and the reason says so.
    """

    name = "cooccurrence"

    def __init__(self, context: JudgeContext, mention_saturation: int = 3, uncovered_score: float = 0.5) -> None:
        if context.stats is None or context.queries is None:
            raise ValueError("the cooccurrence judge needs catalogue statistics and shopper queries")
        self.context = context
        self.mention_saturation = mention_saturation
        self.uncovered_score = uncovered_score

    def fingerprint(self) -> str:
        c = self.context
        return json_digest([self.name, c.stats.digest, c.queries.digest, c.weights, sorted(c.anchor_keys),
                            self.mention_saturation, self.uncovered_score])

    def _one(self, cand: Candidate) -> Judgement:
        stats, queries, w = self.context.stats, self.context.queries, self.context.weights
        lifts = stats.lift_of_each(cand.attributes) if len(cand.attributes) > 1 else []
        coherence = min((min(1.0, lift) ** 0.5 for _, lift in lifts), default=1.0)
        attested = [(a, min(1.0, queries.mentions(a[1]) / self.mention_saturation)) for a in cand.attributes]
        uncovered = [a for a, s in attested if s == 0.0 and a[0] in self.context.anchor_keys]
        if uncovered:
            plausibility = phrasing = self.uncovered_score
            unseen = []
        else:
            plausibility = sum(s for _, s in attested) / len(attested) if attested else 0.0
            phrasing, unseen = queries.phrasing(cand.query)
        comps = {"coherence": round(coherence, 4), "plausibility": round(plausibility, 4), "phrasing": round(phrasing, 4)}
        total = sum(w.values()) or 1.0
        score = sum(w.get(k, 0.0) * v for k, v in comps.items()) / total
        notes = [f"coherence {coherence:.2f}"]
        if lifts:
            (wk, wv), wl = min(lifts, key=lambda t: t[1])
            notes[-1] += f" (lift of {wk}={wv}: {wl:.2f})"
        weak = [f"{k}={v}" for (k, v), s in attested if s == 0.0]
        if uncovered:
            notes.append(f"plausibility and phrasing {self.uncovered_score:.2f} (unknown: the shopper queries never "
                         f"name {', '.join(f'{k}={v}' for k, v in uncovered)})")
        else:
            notes.append(f"plausibility {plausibility:.2f}" + (f" (shoppers never name {', '.join(weak)})" if weak else ""))
            notes.append(f"phrasing {phrasing:.2f}" + (f" (unseen word pairs: {'; '.join(unseen[:3])})" if unseen else ""))
        return Judgement(round(score, 4), "co-occurrence judge (not an LLM): " + ", ".join(notes), self.name, comps)

    def judge(self, candidates: Sequence[Candidate]) -> list[Judgement]:
        return [self._one(c) for c in candidates]


# --- language-model judges ------------------------------------------------------------------------


def render_prompt(cand: Candidate, template: str = PROMPT) -> str:
    """The judge prompt; attributes and query are embedded as JSON so hostile text stays data."""
    attrs = json.dumps({k: v for k, v in cand.attributes}, ensure_ascii=False)
    return template.format(attributes=attrs, query=json.dumps(cand.query, ensure_ascii=False))


def _load_prompt(prompt_path: str | None) -> str:
    if not prompt_path:
        return PROMPT
    text = resolve_data_path(prompt_path).read_text(encoding="utf-8")
    if "{attributes}" not in text or "{query}" not in text:
        raise ValueError(f"judge prompt {prompt_path} must contain {{attributes}} and {{query}}")
    return text


class ModelJudge:
    """A language model asked "yes or no" per candidate; the score is P(yes) (see :mod:`pinlanding.llm`)."""

    def __init__(self, lm: LanguageModel, prompt_path: str | None = None) -> None:
        self.lm = lm
        self.name = lm.name
        self.prompt = _load_prompt(prompt_path)

    def fingerprint(self) -> str:
        return json_digest([self.name, self.lm.model, getattr(self.lm, "base_url", ""), self.prompt])

    def judge(self, candidates: Sequence[Candidate]) -> list[Judgement]:
        answers = self.lm.yes_probability([render_prompt(c, self.prompt) for c in candidates])
        return [Judgement(None, f"{self.name} judge failed", self.name, error=f"{a.kind}: {str(a)[:300]}")
                if isinstance(a, GenerationError) else
                Judgement(round(a, 4), f"{self.name} judge: P(yes) = {a:.2f}", self.name, {"p_yes": round(a, 4)})
                for a in answers]


def _model_judge(backend: str) -> None:
    def build(context: JudgeContext, prompt_path: str | None = None, **options: Any) -> ModelJudge:
        return ModelJudge(create_model(backend, **options), prompt_path)

    JUDGES.register(backend)(build)


for _backend in ("openai", "transformers", "vllm"):
    _model_judge(_backend)


def create_judge(backend: str, context: JudgeContext, params: dict[str, Any] | None = None) -> Judge:
    """Build the configured judge; unknown names list the registered ones."""
    return JUDGES.create(backend, context=context, **(params or {}))


# --- cache ----------------------------------------------------------------------------------------


class JudgeCache:
    """Judgements keyed by (judge fingerprint, tuple, query) in one JSON file; failures are not cached."""

    def __init__(self, path: str | AnyPath | None) -> None:
        self.path = as_path(path) if path else None
        self.entries: dict[str, dict[str, Any]] = (read_json(self.path, default={}) or {}) if self.path else {}
        self.hits = 0

    @staticmethod
    def key(fingerprint: str, cand: Candidate) -> str:
        return json_digest([fingerprint, [list(a) for a in cand.attributes], cand.query])

    def judge(self, judge: Judge, candidates: Sequence[Candidate]) -> list[Judgement]:
        """Judge ``candidates``, asking ``judge`` only about the ones not cached yet."""
        fp = judge.fingerprint()
        keys = [self.key(fp, c) for c in candidates]
        todo = [i for i, k in enumerate(keys) if k not in self.entries]
        self.hits += len(candidates) - len(todo)
        fresh = judge.judge([candidates[i] for i in todo]) if todo else []
        if len(fresh) != len(todo):
            raise RuntimeError(f"judge '{judge.name}' returned {len(fresh)} judgements for {len(todo)} candidates")
        for i, j in zip(todo, fresh):
            if j.error is None:
                self.entries[keys[i]] = asdict(j)
        fresh_by_index = dict(zip(todo, fresh))
        return [fresh_by_index[i] if i in fresh_by_index else Judgement(**self.entries[k]) for i, k in enumerate(keys)]

    def save(self, keep: set[str] | None = None) -> None:
        if self.path:
            entries = {k: v for k, v in self.entries.items() if keep is None or k in keep}
            write_json(self.path, entries)


__all__ = ["JUDGES", "Candidate", "Judgement", "Judge", "JudgeContext", "JudgeCache", "QueryIndex",
           "CooccurrenceStats", "create_judge", "render_prompt",
           "query_tokens"]
