"""The topics stage: attribute tuples with enough products, phrased as shopper queries and judged.

Recipe (:func:`build_topics`): count every tuple of up to ``max_arity`` values of distinct keys over
the attribute graph (Apriori: only values that alone reach ``min_support``) -> keep tuples naming an
anchor key (the product noun) -> generate query, title and slug -> reject tuples whose products are
exactly those of a shorter tuple -> judge the rest (cached) -> apply reviewers' accept/reject.

Support is counted as the feeds stage will build the feed: over the same attribute graph
(``assignments/assignments.parquet``: extraction fused with the encoder), attributes below
``feeds.min_confidence`` ignored, and near-identical products (same brand and normalized title) once, so a
kept topic is a page.

Counting runs part by part over the graph (:func:`count_parts`): the parts' single
values, merged on the driver, give the frequent values; a second pass counts their tuples per part. The
driver holds the merged counters (bounded by the distinct tuples of frequent values), never the products.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from itertools import combinations
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterable, TypedDict

import pyarrow as pa

from pinlanding.collections.artifacts import AnyPath, json_digest, write_json, write_table, write_text
from pinlanding.collections.config import RayConfig
from pinlanding.collections.engines import map_parts
from pinlanding.collections.parts import count_rows, iter_parts, read_part
from pinlanding.collections.schemas import ASSIGNMENTS, PRODUCTS, TOPICS
from pinlanding.collections.stage_inputs import Runtime, StageInputs, artifact, decisions, external
from pinlanding.collections.text import split_words
from pinlanding.evaluation.mapping import family_of, normalize
from pinlanding.feeds.config import FeedsConfig
from pinlanding.vocab.config import JudgeConfig, TopicsConfig, VocabConfig
from pinlanding.vocab.curate import catalog_parts
from pinlanding.vocab.decisions import ReviewState, load_review_state
from pinlanding.vocab.judge import (Attrs, Candidate, CooccurrenceStats, JudgeCache, JudgeContext, Judgement,
                                    QueryIndex, create_judge)

_SMALL_WORDS = {"for", "with", "and", "in", "of", "the", "a", "an", "to", "on"}
BRAND_KEY = "brand"  # the attribute key whose values are the catalogue's brand field (products.brand)


def canonical_attribute(key: str, value: str) -> list[str]:
    """A (key, value) pair as its topic id sees it: the key's attribute family (``color`` and ``colour`` are one)
    and the value without case, punctuation, spacing, plural or Unicode-form differences (``T-Shirts``,
    ``tshirt``, ``t shirt`` are one). Different words stay different values (``pants`` is not ``trousers``)."""
    return [family_of(key) or normalize(key).replace(" ", "_"), normalize(value).replace(" ", "")]


def topic_id(attrs: Attrs) -> str:
    """Stable id of a tuple: SHA-256 of its sorted canonical pairs (:func:`canonical_attribute`), first 16 hex
    digits. Respelling a value or a key keeps the id (the slug, made from the spelling, may change: old slugs
    are redirected by the feed API)."""
    return json_digest(sorted(canonical_attribute(k, v) for k, v in attrs))[:16]


def count_values(product_attrs: dict[str, set[tuple[str, str]]]) -> Counter:
    """Products carrying each (key, value)."""
    return Counter(a for attrs in product_attrs.values() for a in attrs)


def count_combinations(product_attrs: dict[str, set[tuple[str, str]]], frequent: set[tuple[str, str]] | frozenset,
                       max_arity: int) -> Counter:
    """Products supporting each tuple of 2..max_arity ``frequent`` values with distinct keys."""
    support: Counter = Counter()
    for attrs in product_attrs.values():
        items = sorted(a for a in attrs if a in frequent)
        for r in range(2, min(max_arity, len(items)) + 1):
            for combo in combinations(items, r):
                if len({k for k, _ in combo}) == r:
                    support[combo] += 1
    return support


def count_tuples(product_attrs: dict[str, set[tuple[str, str]]], min_support: int, max_arity: int) -> Counter:
    """Products supporting each tuple of 1..max_arity values with distinct keys (frequent values only)."""
    singles = count_values(product_attrs)
    frequent = {a for a, n in singles.items() if n >= min_support}
    support: Counter = Counter({(a,): n for a, n in singles.items() if a in frequent})
    support.update(count_combinations(product_attrs, frequent, max_arity))
    return support


def _ordered(attrs: Attrs, cfg: TopicsConfig) -> list[tuple[str, str]]:
    """Attributes in query order: ``query_order`` keys as listed; unknown keys just before the anchor (the noun)."""
    order = {k: i for i, k in enumerate(cfg.query_order)}
    anchor_pos = min((order[k] for k in cfg.anchor_keys if k in order), default=len(order))
    return sorted(attrs, key=lambda kv: (order.get(kv[0], anchor_pos - 0.5), kv[0], kv[1]))


def shown_attributes(attrs: Attrs, cfg: TopicsConfig) -> list[tuple[str, str]]:
    """The attributes a title names, in query order: a value whose words all appear in another value of the
    tuple adds nothing a shopper would type ("casual" beside "casual shoes") and is left out; of two values
    with the same words the anchor (product noun) stays."""
    ranked = _ordered(attrs, cfg)
    anchors = set(cfg.anchor_keys)
    words = [set(split_words(v)) - _SMALL_WORDS for _, v in ranked]

    def covered(i: int) -> bool:
        return bool(words[i]) and any(
            j != i and words[i] <= words[j] and (words[i] < words[j] or ranked[j][0] in anchors)
            for j in range(len(ranked)))

    return [kv for i, kv in enumerate(ranked) if not covered(i)]


def repeated_words(attrs: Attrs, cfg: TopicsConfig) -> list[str]:
    """Words that two shown attributes' phrases both name ("polo" in a brand and a neck; "for" in the brand
    "Scullers for Her" and the gender's "for men"): such a title stutters however it is ordered. Repeats inside
    one value (a brand's own name) are the catalogue's spelling."""
    seen: Counter = Counter()
    for key, value in shown_attributes(attrs, cfg):
        seen.update(set(split_words(template_for(key, value, cfg).replace("{value}", f" {value} "))))
    return sorted(w for w, n in seen.items() if n > 1)


def template_for(key: str, value: str, cfg: TopicsConfig) -> str:
    """The phrase template of one attribute: the key's ``phrase_templates`` entry, unless the template names a
    part (a word of ``part_nouns``) and the value already names one ("polo collar" stays as it is)."""
    template = cfg.phrase_templates.get(key, "{value}")
    parts = tuple(p.lower() for p in cfg.part_nouns)
    names_part = any(w.startswith(parts) for w in template.lower().replace("{value}", " ").split())
    if names_part and any(w.startswith(parts) for w in re.split(r"[^\w]+", value.lower()) if w):
        return "{value}"
    return template


def phrase(attrs: Attrs, cfg: TopicsConfig, lower: bool = True) -> str:
    """A shopper-style query: modifiers in ``query_order`` (colour, material or pattern, other modifiers), then
    the product noun, then templated keys ("for women"); values repeated by another value are left out."""
    words = []
    for key, value in shown_attributes(attrs, cfg):
        template = template_for(key, value, cfg)
        words.append(template.replace("{value}", value.strip().lower() if lower else value.strip()))
    return re.sub(r"\s+", " ", " ".join(words)).strip()


def title_of(query: str, first: bool = True) -> str:
    """Capitalize each word but small ones (the first word always, when ``first``), keeping inner capitals:
    "black T-Shirt for men" -> "Black T-Shirt for Men"."""
    words = query.split(" ")
    return " ".join(w if (w in _SMALL_WORDS and (i or not first)) else w[:1].upper() + w[1:]
                    for i, w in enumerate(words))


def spelling_key(text: str) -> str:
    """Case- and punctuation-insensitive key of a name: "U.S. Polo Assn." and "u.s. polo assn" -> "uspoloassn"."""
    return "".join(split_words(text))


def brand_spellings(brands: Iterable[str | None]) -> dict[str, str]:
    """Spelling key -> the catalogue's most frequent spelling of that brand (ties: the first in sort order)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for b in brands:
        if b and b.strip():
            counts[spelling_key(b)][b.strip()] += 1
    return {k: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for k, c in counts.items() if k}


def topic_title(attrs: Attrs, cfg: TopicsConfig, spellings: dict[str, str] | None = None) -> str:
    """The page title: the query's words capitalized but small ones, brand values as the catalogue spells them."""
    words: list[str] = []
    for key, value in shown_attributes(attrs, cfg):
        brand = spellings.get(spelling_key(value)) if key == BRAND_KEY and spellings else None
        for word in template_for(key, value, cfg).split():
            if word != "{value}":
                words.append(title_of(word, first=not words))
            else:
                words.append(brand or title_of(value.strip(), first=not words))
    return re.sub(r"\s+", " ", " ".join(words)).strip()


def slugify(text: str) -> str:
    """ASCII slug; text with no Latin letters becomes ``topic``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:80].strip("-")
    return slug or "topic"


def _product_attrs(graph: pa.Table, min_confidence: float = 0.0) -> dict[str, set[tuple[str, str]]]:
    """Product -> its (key, value) pairs of confidence >= ``min_confidence`` (no confidence counts as 1.0, as the
    feeds stage's ``clean_assignments`` reads it)."""
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    confidence = (graph.column("confidence").to_pylist() if "confidence" in graph.column_names
                  else [None] * graph.num_rows)
    for pid, key, value, conf in zip(*(graph.column(c).to_pylist() for c in ("product_id", "key", "value")), confidence):
        if (1.0 if conf is None else conf) >= min_confidence:
            out[pid].add((key, value))
    return out


def _anchored(attrs: Attrs, anchors: set[str]) -> bool:
    return not anchors or any(k in anchors for k, _ in attrs)


@dataclass
class TupleCounts:
    """Support of the catalogue's value tuples, merged from the parts' counts."""

    support: Counter  # frequent single values and tuples of them (see count_tuples)
    keys: set[str]  # keys present on any product
    accepted: Counter  # products carrying each reviewer-accepted tuple


def variant_key(brand: str | None, title: str | None) -> str:
    """Near-identical products share this key: brand and title, lowercased, runs of non-alphanumerics as one
    space (the feeds stage's ``scoring.product_groups`` collapses them into one card the same way)."""
    norm = lambda text: re.sub(r"[\W_]+", " ", (text or "").lower()).strip()  # noqa: E731
    return f"{norm(brand)}|{norm(title)}"


def _by_variant(product_attrs: dict[str, set[tuple[str, str]]], products: pa.Table) -> dict[str, set[tuple[str, str]]]:
    """Merge the attributes of near-identical products (:func:`variant_key`): a feed shows them as one card."""
    key = {pid: variant_key(b, t) for pid, b, t in zip(*(products.column(c).to_pylist()
                                                        for c in ("product_id", "brand", "title")))}
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for pid, attrs in product_attrs.items():
        out[key.get(pid, f"id:{pid}")] |= attrs
    return out


def _read_part_attrs(graph: AnyPath, min_confidence: float, products: AnyPath | None,
                     name: str) -> dict[str, set[tuple[str, str]]]:
    attrs = _product_attrs(read_part(graph, name, ASSIGNMENTS, ["product_id", "key", "value", "confidence"]),
                           min_confidence)
    if products is None:
        return attrs
    return _by_variant(attrs, read_part(products, name, PRODUCTS, ["product_id", "brand", "title"]))


def _part_values(graph: AnyPath, min_confidence: float, products: AnyPath | None, name: str) -> Counter:
    return count_values(_read_part_attrs(graph, min_confidence, products, name))


def _part_tuples(graph: AnyPath, min_confidence: float, products: AnyPath | None, frequent: frozenset,
                 max_arity: int, accepted: tuple[Attrs, ...], name: str) -> tuple[Counter, Counter]:
    product_attrs = _read_part_attrs(graph, min_confidence, products, name)
    carried = Counter({a: n for a in accepted if (n := sum(1 for s in product_attrs.values() if set(a) <= s))})
    return count_combinations(product_attrs, frequent, max_arity), carried


def _merge(counters: Iterable[Counter]) -> Counter:
    total: Counter = Counter()
    for c in counters:
        total.update(c)
    return total


def count_parts(graph: AnyPath, names: list[str], min_support: int, max_arity: int, accepted: Iterable[Attrs],
                ray_cfg: RayConfig | None = None, min_confidence: float = 0.0,
                products: AnyPath | None = None) -> TupleCounts:
    """Two passes over the parts (products never span parts, so their counts add up): single values, then the
    tuples of the frequent ones and the products of each ``accepted`` tuple.

    Counted as the feeds stage builds feeds, so that a topic's support is its feed's size: only attributes of
    confidence >= ``min_confidence`` (``feeds.min_confidence``), and, given the co-partitioned ``products``,
    near-identical products (same brand and normalized title) once, as the one card a feed shows for them
    (within a part; the feeds stage also merges same-photo products, which this count cannot see)."""
    singles = _merge(map_parts(partial(_part_values, graph, min_confidence, products), names, ray_cfg,
                               desc="topics: values"))
    frequent = frozenset(a for a, n in singles.items() if n >= min_support)
    task = partial(_part_tuples, graph, min_confidence, products, frequent, max_arity,
                   tuple(dict.fromkeys(accepted)))
    combos, carried = zip(*map_parts(task, names, ray_cfg, desc="topics: tuples")) if names else ((), ())
    support: Counter = Counter({(a,): n for a, n in singles.items() if a in frequent})
    support.update(_merge(combos))
    return TupleCounts(support, {k for k, _ in singles}, _merge(carried))


def held_out_values(graph: AnyPath, names: list[str], min_support: int, min_confidence: float,
                    ray_cfg: RayConfig | None = None, products: AnyPath | None = None) -> list[dict[str, Any]]:
    """Values that ``min_support`` products carry but fewer than that with confidence >= ``min_confidence``: no
    topic can name them until their evidence is confirmed (the title or the encoder) or a reviewer accepts a
    topic. Most carried first; counted as :func:`count_parts` counts (near-identical products once)."""
    def singles(floor: float) -> Counter:
        return _merge(map_parts(partial(_part_values, graph, floor, products), names, ray_cfg, desc="topics: evidence"))

    carried, confident = singles(0.0), singles(min_confidence)
    held = [(a, n) for a, n in carried.items() if n >= min_support and confident[a] < min_support]
    return [{"key": k, "value": v, "products": n, "confident": confident[(k, v)]}
            for (k, v), n in sorted(held, key=lambda x: (-x[1], x[0]))]


def accepted_tuples(review: ReviewState) -> dict[str, Attrs]:
    """Reviewer-accepted topics that parse: topic id -> its sorted (key, value) tuple."""
    out = {}
    for tid, d in review.topics.items():
        if d.action == "accept":
            try:
                attrs = tuple(sorted((str(k), str(v)) for k, v in json.loads(d.target)))
            except (ValueError, TypeError):
                continue
            if attrs:
                out[tid] = attrs
    return out


def _check(tc: TopicsConfig) -> None:
    if tc.min_support < 1 or tc.max_arity < 1:
        raise ValueError(f"topics.min_support and topics.max_arity must be >= 1, got {tc.min_support}, {tc.max_arity}")


def build_topics(tc: TopicsConfig, judge_cfg: JudgeConfig, counts: TupleCounts, n_products: int,
                 queries: QueryIndex | None, review: ReviewState, cache: JudgeCache,
                 spellings: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Candidate topics with their judgement and status; returns (rows, report). ``spellings`` (from
    :func:`brand_spellings`) gives brand values the catalogue's casing in titles."""
    _check(tc)
    support = Counter(counts.support)
    anchors = set(tc.anchor_keys) & counts.keys
    # reviewer-accepted tuples are candidates whatever their support (if any product still has them)
    accepted = {}
    for tid, attrs in accepted_tuples(review).items():
        if attrs not in support and counts.accepted[attrs]:
            support[attrs] = counts.accepted[attrs]
            accepted[attrs] = tid
    candidates = [(a, n) for a, n in support.items()
                  if (n >= tc.min_support or a in accepted) and _anchored(a, anchors)]
    candidates.sort(key=lambda an: (-an[1], len(an[0]), an[0]))
    rows, slugs, to_judge = [], set(), []
    queries_seen: dict[str, str] = {}  # query -> the (better supported) topic that says it first
    seen: dict[Attrs, dict[str, Any]] = {}  # the rows of the candidates so far
    for attrs, n in candidates:
        query = phrase(attrs, tc)
        tid = topic_id(attrs)
        slug = slugify(query)
        if slug in slugs:
            slug = f"{slug}-{tid[:6]}"
        slugs.add(slug)
        row = {"topic_id": tid, "slug": slug, "title": topic_title(attrs, tc, spellings), "query": query,
               "attributes": [{"key": k, "value": v} for k, v in attrs], "support": n,
               "judge_score": None, "status": None, "reason": None}
        repeated = repeated_words(attrs, tc)
        if repeated:
            row.update(status="rejected", _why="repeated word",
                       reason=f"repeated word: {', '.join(repeated)} in two of its values ('{query}')")
        elif query in queries_seen:
            row.update(status="rejected", _why="same title",
                       reason=f"same title: '{query}' already names {queries_seen[query]}, which has more products")
        queries_seen.setdefault(query, tid)
        if row["status"] is None and tc.redundant_share > 0 and len(attrs) > 1:
            # candidates come by falling support, so every shorter tuple that carries these products is seen
            covering = [sub for r in range(len(attrs) - 1, 0, -1) for sub in combinations(attrs, r)
                        if sub in seen and seen[sub]["status"] != "rejected"
                        and n >= tc.redundant_share * seen[sub]["support"]]
            if covering:
                m, name = seen[covering[0]]["support"], phrase(covering[0], tc)
                row.update(status="rejected", _why="redundant",
                           reason=f"redundant: the same {n} products as '{name}'" if m == n else
                           f"redundant: {n} products, {n / m:.0%} of the {m} of '{name}'")
        seen[attrs] = row
        if row["status"] is None:
            if len(to_judge) < tc.max_candidates:
                to_judge.append((row, Candidate(attrs, query, n)))
            else:
                row.update(status="rejected", _why="not judged",
                           reason=f"not judged: beyond topics.max_candidates={tc.max_candidates}")
        rows.append(row)
    stats = CooccurrenceStats(n_products, dict(support))
    context = JudgeContext(stats=stats, queries=queries, weights=judge_cfg.weights, anchor_keys=tuple(sorted(anchors)))
    judge = create_judge(judge_cfg.backend, context, judge_cfg.params)
    judgements: list[Judgement] = cache.judge(judge, [c for _, c in to_judge]) if to_judge else []
    for (row, _), j in zip(to_judge, judgements):
        row["judge_score"] = j.score
        if j.score is None:
            row.update(status="rejected", _why="judge error", reason=f"judge error: {j.error}")
        elif j.score >= judge_cfg.keep_threshold:
            row.update(status="kept", reason=f"{j.reason}; score {j.score:g} >= {judge_cfg.keep_threshold}")
        else:
            row.update(status="rejected", _why="judge score",
                       reason=f"{j.reason}; score {j.score:g} < {judge_cfg.keep_threshold}")
    judged_status = Counter(r["status"] for r in rows)
    for row in rows:
        d = review.topics.get(row["topic_id"])
        if d is not None:
            verdict = "kept" if d.action == "accept" else "rejected"
            row.update(status=verdict, _why="review", reason=f"{'accepted' if verdict == 'kept' else 'rejected'} in review by "
                                              f"{d.who} at {d.at} (judge: {row['reason']})")
    rows.sort(key=lambda r: (r["status"] != "kept", -(r["judge_score"] or 0.0), -r["support"], r["topic_id"]))
    fp = judge.fingerprint()
    cache.save(keep={JudgeCache.key(fp, c) for _, c in to_judge})
    report = _report(rows, judged_status, judge.name, tc, anchors)
    return rows, report


def _report(rows: list[dict[str, Any]], judged: Counter, backend: str, tc: TopicsConfig,
            anchors: set[str]) -> dict[str, Any]:
    kept = [r for r in rows if r["status"] == "kept"]
    rejected = [r for r in rows if r["status"] == "rejected"]
    kinds = Counter(r.get("_why", "judge score") for r in rejected)
    brief = lambda r: {"title": r["title"], "query": r["query"], "support": r["support"],  # noqa: E731
                       "judge_score": r["judge_score"], "reason": r["reason"]}
    return {"judge": backend, "candidates": len(rows), "kept": len(kept), "rejected": len(rejected),
            "by_judge_before_review": dict(judged), "rejected_by": dict(kinds),
            "anchors": sorted(anchors), "min_support": tc.min_support, "max_arity": tc.max_arity,
            "kept_examples": [brief(r) for r in kept[:20]],
            "rejected_examples": [brief(r) for r in rejected if r["judge_score"] is not None][:20]}


def _report_markdown(rep: dict[str, Any]) -> str:
    lines = [f"# Topics report (judge: {rep['judge']})", "",
             f"{rep['candidates']} candidate tuples (support >= {rep['min_support']}, up to {rep['max_arity']} "
             f"attributes, anchored on {', '.join(rep['anchors']) or 'nothing'}): **{rep['kept']} kept**, "
             f"{rep['rejected']} rejected ({json.dumps(rep['rejected_by'], sort_keys=True)}).", ""]
    if rep.get("min_confidence") is not None:
        lines += [f"Support counts attributes of confidence >= {rep['min_confidence']} (feeds.min_confidence), as the "
                  "feeds stage matches products, so a kept topic's support is the size of its feed.", ""]
    if rep["judge"] == "cooccurrence":
        lines += ["The judge is the offline co-occurrence scorer, not a language model: coherence is the lift of "
                  "each attribute given the others in this catalogue, plausibility is how often real shoppers "
                  "name the values, phrasing is how many of the query's word pairs real shoppers type.", ""]
    if rep.get("held_out"):
        lines += [f"## Values held out of topics ({len(rep['held_out'])})", "",
                  f"Carried by at least {rep['min_support']} products, but with confidence >= {rep['min_confidence']} "
                  "by fewer: their evidence is weak (e.g. a material only the description names) and nothing "
                  "confirmed it. A reviewer's accepted topic publishes them.", "",
                  "| key | value | products | confident |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {_md(r['key'])} | {_md(r['value'])} | {r['products']} | {r['confident']} |"
                  for r in rep["held_out"][:50]]
        lines.append("")
    for title, items in (("Kept (best first)", rep["kept_examples"]), ("Rejected by the judge", rep["rejected_examples"])):
        lines += [f"## {title}", "", "| title | query | products | score | reason |", "| --- | --- | ---: | ---: | --- |"]
        lines += [f"| {_md(r['title'])} | {_md(r['query'])} | {r['support']} | {r['judge_score']} | {_md(r['reason'])} |"
                  for r in items]
        lines.append("")
    return "\n".join(lines)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class TopicsInputs(StageInputs):
    """The topics stage reads the catalogue, the attribute graph (assignments), the value and topic decisions
    and the shopper queries its judge scores phrasing against."""

    outputs = ("topics",)
    catalog: AnyPath = artifact("catalog")
    assignments: AnyPath = artifact("assignments")
    decisions: AnyPath = decisions("value", "topic")
    queries: AnyPath | None = external("vocab.judge.queries")


class TopicsCounts(TypedDict):
    candidates: int
    kept: int
    rejected: int
    judge: str
    judge_cache_hits: int


def run_topics(tc: TopicsConfig, vocab: VocabConfig, feeds: FeedsConfig, ray_cfg: Runtime[RayConfig],
               inputs: TopicsInputs) -> TopicsCounts:
    """Stage entry point: writes topics/topics.parquet, topics/report.{json,md}, topics/.judge_cache.json.
    ``vocab``: the vocabulary settings its judge and the decisions use; ``feeds``: the feeds stage's confidence
    floor and variant grouping, so that a kept topic's support is its feed's size."""
    layout = inputs.layout
    _check(tc)
    n_products = count_rows(layout.products)
    review = load_review_state(inputs.decisions, vocab.cluster.fold_plurals)
    # support counted with the feeds stage's confidence floor: a kept topic is a feed of that many products
    counts = count_parts(layout.assignments, catalog_parts(layout, layout.assignments),
                         tc.min_support, tc.max_arity, accepted_tuples(review).values(), ray_cfg,
                         min_confidence=feeds.min_confidence,
                         products=layout.products if feeds.variants else None)
    spellings = brand_spellings(b for _, part in iter_parts(layout.products, PRODUCTS, ["brand"])
                                for b in part.column("brand").to_pylist())
    queries = QueryIndex.from_tsv(inputs.queries, vocab.judge.query_column) \
        if vocab.judge.backend == "cooccurrence" else None
    folder = layout.dir("topics")
    cache = JudgeCache(folder / ".judge_cache.json" if vocab.judge.cache else None)
    rows, report = build_topics(tc, vocab.judge, counts, n_products, queries, review, cache, spellings)
    report["min_confidence"] = feeds.min_confidence
    report["held_out"] = held_out_values(layout.assignments, catalog_parts(layout, layout.assignments), tc.min_support,
                                         feeds.min_confidence, ray_cfg,
                                         layout.products if feeds.variants else None)
    write_table(pa.Table.from_pylist(rows, schema=TOPICS), layout.topics, TOPICS)
    write_json(folder / "report.json", report)
    write_text(folder / "report.md", _report_markdown(report))
    return {"candidates": report["candidates"], "kept": report["kept"], "rejected": report["rejected"],
            "judge": report["judge"], "judge_cache_hits": cache.hits}
