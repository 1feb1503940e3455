"""Are a run's collections distinct? Figures from issue 15, read from a finished run folder (no stage runs).

    python benchmarks/bench_distinct.py --run runs/myntra
    python benchmarks/bench_distinct.py --run runs/myntra --page 24 --share 0.8 --top 10

Prints: published collections; the share of collections whose first ``page`` products share >= ``share``
of the smaller first page with another collection; feeds repeating a near-identical product (same brand
and normalized title) in their top ``top``; the share of kept topics that are published (as their own
feed, and counting merged aliases); titles with a repeated word (content words, and any word).
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse

from pinlanding.collections.artifacts import read_table
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import iter_parts
from pinlanding.collections.schemas import FEEDS, PRODUCTS, TOPICS

SMALL_WORDS = {"for", "with", "and", "in", "of", "the", "a", "an", "to", "on"}


def words(text: str | None) -> list[str]:
    """Lowercase words of letters and digits (normalized titles)."""
    return re.findall(r"[^\W_]+", (text or "").lower())


def title_words(title: str) -> list[str]:
    """A title's words as a shopper reads them: split on spaces, outer punctuation stripped ("Q&Q" is one)."""
    return [w for w in (t.strip(".,:;!?()'\"").lower() for t in title.split()) if w]


def duplicate_share(feeds: list[dict], page: int, share: float) -> float:
    """Share of feeds whose first ``page`` products share >= ``share`` of the smaller first page with another."""
    ids: dict[str, int] = {}
    rows, cols = [], []
    for i, f in enumerate(feeds):
        for p in (f["products"] or [])[:page]:
            rows.append(i)
            cols.append(ids.setdefault(p["product_id"], len(ids)))
    m = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(feeds), max(len(ids), 1)))
    m.data[:] = 1.0
    inter = (m @ m.T).tocoo()
    sizes = np.asarray(m.sum(axis=1)).ravel()
    off = inter.row != inter.col
    r, c, v = inter.row[off], inter.col[off], inter.data[off]
    small = np.minimum(sizes[r], sizes[c])
    hit = (small > 0) & (v >= share * small)
    return len(set(r[hit].tolist())) / max(len(feeds), 1)


def repeating_feeds(feeds: list[dict], names: dict[str, tuple[str, str]], top: int) -> int:
    """Feeds whose top ``top`` show two products with the same brand and normalized title."""
    n = 0
    for f in feeds:
        keys = [names.get(p["product_id"]) for p in (f["products"] or [])[:top]]
        keys = [k for k in keys if k is not None]
        n += len(keys) != len(set(keys))
    return n


def repeated_titles(titles: list[str], content_only: bool) -> list[str]:
    """Titles naming a word twice (small words like "for" ignored when ``content_only``)."""
    out = []
    for t in titles:
        counts = Counter(w for w in title_words(t) if not (content_only and w in SMALL_WORDS))
        if any(c > 1 for c in counts.values()):
            out.append(t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/myntra"), help="finished run folder")
    parser.add_argument("--page", type=int, default=24, help="first-page length compared between collections")
    parser.add_argument("--share", type=float, default=0.8, help="shared share of the smaller first page")
    parser.add_argument("--top", type=int, default=10, help="top products checked for near-identical repeats")
    args = parser.parse_args()
    layout = RunLayout(args.run)
    feeds = read_table(layout.feeds, FEEDS).to_pylist()
    topics = read_table(layout.topics, TOPICS).select(["status"]).column("status").to_pylist()
    kept = sum(s == "kept" for s in topics)
    names = {}
    for _, part in iter_parts(layout.products, PRODUCTS, ["product_id", "brand", "title"]):
        for pid, brand, title in zip(*(part.column(c).to_pylist() for c in ("product_id", "brand", "title"))):
            names[pid] = (" ".join(words(brand)), " ".join(words(title)))
    aliases = sum(len(f.get("aliases") or []) for f in feeds)
    titles = [f["title"] or f["slug"] for f in feeds]
    content, anyword = repeated_titles(titles, True), repeated_titles(titles, False)
    print(f"run: {args.run}")
    print(f"published collections:                               {len(feeds)}")
    print(f"share sharing >= {args.share:.0%} of first {args.page} with another:      "
          f"{duplicate_share(feeds, args.page, args.share):.3f}")
    print(f"feeds repeating a brand+title in their top {args.top}:         {repeating_feeds(feeds, names, args.top)}")
    print(f"kept topics published (own feed):                    {len(feeds) / max(kept, 1):.3f} ({len(feeds)} of {kept})")
    print(f"kept topics published (own feed or alias):           {(len(feeds) + aliases) / max(kept, 1):.3f}")
    print(f"titles with a repeated content word:                 {len(content)} {content[:5]}")
    print(f"titles with any repeated word (incl. 'for'):         {len(anyword)} {anyword[:5]}")


if __name__ == "__main__":
    main()
