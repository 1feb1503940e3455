"""Collection-level merchandising from the review decisions: pins, exclusions, titles, publish windows,
and the run's URL changes (old slugs kept as aliases, dropped collections as 410 tombstones).

The feeds stage applies :func:`apply_rules` after ranking and before duplicate merging, so a pinned product
sits at its position in ``feeds.jsonl``, on the page and in the API alike; the review app previews a feed
with the same function. A feed outside its publish window is dropped with reason ``outside_window``.
"""
from __future__ import annotations

from datetime import date
from typing import Any, Iterable

from pinlanding.collections.artifacts import AnyPath, read_json, read_table, write_json
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import iter_parts
from pinlanding.collections.schemas import FEEDS, PRODUCTS
from pinlanding.vocab.decisions import Merchandising, ReviewState

WINDOW_REASON = "outside_window"


def in_window(rules: Merchandising, today: date) -> bool:
    """Whether ``today`` falls in the rules' publish window (open ends always do)."""
    start, end = rules.window
    return (not start or date.fromisoformat(start) <= today) and (not end or today <= date.fromisoformat(end))


def apply_to_products(products: list[dict[str, Any]], rules: Merchandising, catalogue: set[str] | None = None,
                      limit: int | None = None) -> list[dict[str, Any]]:
    """Products in their merchandised order: excluded ones removed, pinned ones moved to their positions
    (a pinned product not ranked in the feed is added if ``catalogue`` has it; score None), the rest in rank
    order; cut to ``limit`` without losing a pin."""
    ranked = [p for p in products if p["product_id"] not in rules.excluded and p["product_id"] not in rules.pins]
    have = {p["product_id"]: p for p in products}
    pinned = {}
    for pid, pos in rules.pins.items():
        if pid in have or (catalogue is not None and pid in catalogue):
            pinned[pid] = have.get(pid) or {"product_id": pid, "score": None, "variants": []}
    out = list(ranked)
    for pid, _ in sorted(((pid, rules.pins[pid]) for pid in pinned), key=lambda kv: (kv[1], kv[0])):
        out.insert(min(rules.pins[pid] - 1, len(out)), pinned[pid])
    if limit is not None and len(out) > limit:
        keep = set(pinned)
        extra = len(out) - limit
        for i in range(len(out) - 1, -1, -1):  # cut unpinned products from the end
            if extra and out[i]["product_id"] not in keep:
                out.pop(i)
                extra -= 1
    return out


def apply_rules(feeds: list[dict[str, Any]], state: ReviewState, today: date, catalogue: set[str] | None = None,
                limit: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(feeds with rules applied, feeds dropped for their publish window, number of feeds changed)."""
    kept, dropped, changed = [], [], 0
    for feed in feeds:
        rules = state.merch.get(feed["topic_id"])
        if rules is None or rules.empty():
            kept.append(feed)
            continue
        changed += 1
        if not in_window(rules, today):
            start, end = rules.window
            dropped.append({"topic_id": feed["topic_id"], "slug": feed["slug"], "title": feed.get("title"),
                            "size": feed["size"], "conformity": None, "reason": WINDOW_REASON,
                            "detail": f"publish window {start or '...'} to {end or '...'} does not include {today}"})
            continue
        products = apply_to_products(feed["products"], rules, catalogue, limit)
        kept.append({**feed, "products": products, "size": len(products), "title": rules.title or feed.get("title")})
    return kept, dropped, changed


def url_changes(previous: Iterable[dict[str, Any]], feeds: list[dict[str, Any]], moved: dict[str, str],
                gone_before: Iterable[str] = (), merged: dict[str, str] | None = None) -> dict[str, Any]:
    """What happened to the previous run's URLs. Each old slug (a feed's own or one of its aliases) that is no
    longer published or aliased goes, as an alias, to the old feed's successor (``moved``: old topic id -> new
    topic id, from rename/merge decisions; when the successor was merged into another feed as a duplicate,
    ``merged``: its topic id -> its slug, on that feed's), else to the feed still published at the old feed's own
    slug (an alias keeps redirecting where it did). Any other old slug becomes a tombstone (``gone``), and stays
    one until a collection takes the slug again."""
    by_id = {f["topic_id"]: f for f in feeds}
    by_slug = {f["slug"]: f for f in feeds}
    owner = {a: f for f in feeds for a in f.get("aliases") or []}
    live = set(by_slug) | set(owner)
    aliased: dict[str, str] = {}
    for old in previous:
        successor = moved.get(old["topic_id"], "")
        new = by_id.get(successor) or owner.get((merged or {}).get(successor, "")) or by_slug.get(old["slug"])
        if new is None:
            continue
        for slug in [old["slug"], *(old.get("aliases") or [])]:
            if slug not in live:
                new["aliases"] = [*(new.get("aliases") or []), slug]
                aliased[slug] = new["slug"]
                live.add(slug)
    old_slugs = {s for old in previous for s in [old["slug"], *(old.get("aliases") or [])]}
    gone = sorted((old_slugs | set(gone_before)) - live)
    return {"aliased": aliased, "gone": gone, "added": sorted({f["slug"] for f in feeds} - old_slugs)}


def merchandise(feeds: list[dict[str, Any]], state: ReviewState, products: AnyPath,
                max_products: int) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """The feeds stage's step: the merchandising decisions in ``state`` applied to the feeds of the catalogue
    ``products`` (see :func:`apply_rules`)."""
    if not any(not r.empty() for r in state.merch.values()):
        return feeds, [], {}
    catalogue: set[str] = set()
    for _, part in iter_parts(products, PRODUCTS, ["product_id"]):
        catalogue.update(part.column("product_id").to_pylist())
    kept, dropped, changed = apply_rules(feeds, state, date.today(), catalogue, max_products)
    return kept, dropped, {"merchandised": changed, "outside_window": len(dropped)}


def record_changes(layout: RunLayout, state: ReviewState, fold: bool, feeds: list[dict[str, Any]],
                   dropped: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare with the feeds the last run published (still on disk) and write ``feeds/changes.json``;
    ``state`` and ``fold``: the review decisions (renames and merges since then) and ``vocab.cluster.fold_plurals``;
    ``dropped``: this run's dropped records (duplicates name the slug they were merged under)."""
    from pinlanding.collections.scoped import value_map, vocabulary_pairs
    from pinlanding.vocab.topics import topic_id

    previous = read_table(layout.feeds, FEEDS).to_pylist() if layout.feeds.exists() else []
    before = read_json(layout.dir("feeds") / "changes.json", default={}) or {}
    moved: dict[str, str] = {}
    if previous:
        mapped = value_map(state, vocabulary_pairs(layout), fold)
        for old in previous:
            pairs = [(a["key"], mapped(a["key"], a["value"])) for a in old["attributes"] or []]
            if pairs and all(v is not None for _, v in pairs):
                moved[old["topic_id"]] = topic_id(sorted(set(pairs)))
    merged = {d["topic_id"]: d["slug"] for d in dropped if d["reason"] == "duplicate_feed"}
    changes = url_changes(previous, feeds, moved, before.get("gone") or [], merged)
    write_json(layout.dir("feeds") / "changes.json", changes)
    return {"urls_aliased": len(changes["aliased"]), "urls_gone": len(changes["gone"])}
