"""Per-part partial counts of attributes, and the canonical transform of one part.

The driver never holds the attributes: :func:`count_raw` turns one part of them into partial counts
(:class:`RawCounts`: distinct products per value, co-occurrences, drops) and :func:`merge_counts` adds the
parts' counts up (products never span parts, so counts add up). :func:`canonicalize` maps one part to
canonical values and returns the counts (:class:`CuratedCounts`) the vocabulary rows and the report need.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from itertools import combinations
from typing import Any, Iterable, TypeVar

import pandas as pd
import pyarrow as pa

from pinlanding.collections.text import key_form
from pinlanding.vocab.clustering import normalize_value, sanitize_value

C = TypeVar("C")


@dataclass
class ValueStats:
    """Report statistics of an attribute table: distinct (product, key, value) rows, products, products per value."""

    rows: int = 0
    products: int = 0
    per_value: Counter = field(default_factory=Counter)  # (key, value) -> products


@dataclass
class RawCounts:
    """What the curator learns from: partial counts of raw attributes over some products (one part, or merged)."""

    rows_in: int = 0
    by_reason: Counter = field(default_factory=Counter)  # sanitize reason -> rows dropped
    bad: Counter = field(default_factory=Counter)  # (key, raw value, reason) -> products
    surfaces: Counter = field(default_factory=Counter)  # (key, norm, clean) -> products
    groups: Counter = field(default_factory=Counter)  # (key, norm) -> products
    co: Counter = field(default_factory=Counter)  # (key, norm a, norm b), a < b -> products carrying both
    keys: Counter = field(default_factory=Counter)  # key -> products carrying any value of it
    strong: Counter = field(default_factory=Counter)  # (key, norm) -> products with it from a non-weak source
    stats: ValueStats = field(default_factory=ValueStats)  # of the raw table, for the report


@dataclass
class CuratedCounts:
    """Partial counts of curated attributes: report statistics and products per (key, canonical, source)."""

    stats: ValueStats = field(default_factory=ValueStats)
    sources: Counter = field(default_factory=Counter)
    held: Counter = field(default_factory=Counter)  # (key, canonical) -> products, of values held for review


def merge_counts(parts: Iterable[C], empty: C) -> C:
    """Sum partial counts field by field (ints, Counters, nested count dataclasses) into ``empty``.

    Exact because one product's rows are all in one part: distinct-product counts of parts add up.
    Counters keep first-seen order, so ties later sorted stably fall as on the whole table.
    """
    for part in parts:
        _add(empty, part)
    return empty


def _add(acc: Any, part: Any) -> None:
    for f in fields(acc):
        a, b = getattr(acc, f.name), getattr(part, f.name)
        if isinstance(a, Counter):
            a.update(b)
        elif isinstance(a, int):
            setattr(acc, f.name, a + b)
        else:
            _add(a, b)


def _nunique(df: pd.DataFrame, by: list[str]) -> Counter:
    """Distinct products per group of ``by`` columns."""
    if df.empty:
        return Counter()
    return Counter({k: int(n) for k, n in df.groupby(by, dropna=False)["product_id"].nunique().items()})


def value_stats(table: pa.Table) -> ValueStats:
    df = table.select(["product_id", "key", "value"]).to_pandas().drop_duplicates()
    return ValueStats(rows=len(df), products=int(df["product_id"].nunique()), per_value=_nunique(df, ["key", "value"]))


def prepare(attributes: pa.Table, max_value_chars: int, fold_plurals: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normalized keys and sanitized values: (usable rows with ``clean`` and ``norm``, dropped rows with ``reason``)."""
    df = attributes.select(["product_id", "key", "value", "source", "confidence"]).to_pandas()
    df["key"] = [key_form(k) for k in df["key"]]
    uniq = {v: sanitize_value(v, max_value_chars) for v in pd.unique(df["value"])}
    df["clean"] = [uniq[v][0] for v in df["value"]]
    df["reason"] = [uniq[v][1] for v in df["value"]]
    df.loc[df["key"] == "", "reason"] = "empty_key"
    bad = df[df["reason"].notna()]
    df = df[df["reason"].isna()].drop(columns="reason")
    uniq_norm = {v: normalize_value(v, fold_plurals) for v in pd.unique(df["clean"])}
    df["norm"] = [uniq_norm[v] for v in df["clean"]]
    return df, bad


def _cooccurrence(df: pd.DataFrame) -> Counter:
    """Products carrying two normalized values of one key (only keys with multi-valued products)."""
    per = df[["product_id", "key", "norm"]].drop_duplicates()
    multi = per[per.duplicated(["product_id", "key"], keep=False)]
    out: Counter = Counter()
    for (_, key), norms in multi.groupby(["product_id", "key"])["norm"]:
        for a, b in combinations(sorted(norms), 2):
            out[(key, a, b)] += 1
    return out


def _weak(source: Any, weak_sources: frozenset[str]) -> bool:
    """Whether a row's evidence comes only from weak sources ("neighbors"; "title+neighbors" is not weak)."""
    return isinstance(source, str) and set(source.split("+")) <= weak_sources


def count_raw(attributes: pa.Table, max_value_chars: int, fold_plurals: bool,
              weak_sources: Iterable[str] = ()) -> RawCounts:
    """The curator's counts over the products of ``attributes`` (whole products: one part, or a table)."""
    df, bad = prepare(attributes, max_value_chars, fold_plurals)
    weak = frozenset(weak_sources)
    strong = df[[not _weak(s, weak) for s in df["source"]]] if weak else df
    return RawCounts(rows_in=len(df) + len(bad), by_reason=Counter(bad["reason"]),
                     bad=_nunique(bad, ["key", "value", "reason"]), surfaces=_nunique(df, ["key", "norm", "clean"]),
                     groups=_nunique(df, ["key", "norm"]), co=_cooccurrence(df),
                     keys=Counter({str(k): int(n) for k, n in df.groupby("key")["product_id"].nunique().items()}),
                     strong=_nunique(strong, ["key", "norm"]), stats=value_stats(attributes))


def _extra_rows(df: pd.DataFrame, extras: dict[tuple[str, str], list[tuple[str, str]]]) -> pd.DataFrame:
    """Rows of other keys that a value's words carry ("Winter Jacket" -> season "winter"), as ``df`` rows."""
    rows = [{**row, "key": k2, "canonical": v2}
            for row in df[["product_id", "key", "norm", "source", "confidence", "clean"]].to_dict("records")
            for k2, v2 in extras.get((row["key"], row["norm"]), ())]
    return pd.DataFrame(rows, columns=[*df.columns]) if rows else df.iloc[0:0]


def canonicalize(attributes: pa.Table, mapping: dict[tuple[str, str], str | None], max_value_chars: int,
                 fold_plurals: bool, extras: dict[tuple[str, str], list[tuple[str, str]]] | None = None,
                 held: frozenset[tuple[str, str]] = frozenset()) -> tuple[pa.Table, CuratedCounts]:
    """Rows of ``attributes`` with their canonical value (ATTRIBUTES; one per product, key, value) and their counts.

    ``mapping`` is the fitted :attr:`VocabCurator.mapping_`, ``extras`` its :attr:`~VocabCurator.extras_` (rows of
    other keys a value carries) and ``held`` the (key, canonical) values held for review: counted, not written.
    Of several rows with one canonical value the most confident is kept (a stable sort, so the choice among ties
    does not depend on how products are parted).
    """
    df, _ = prepare(attributes, max_value_chars, fold_plurals)
    df = df.assign(canonical=[mapping[(k, n)] for k, n in zip(df["key"], df["norm"])])
    if extras:
        df = pd.concat([df, _extra_rows(df, extras)], ignore_index=True)
    df = df[df["canonical"].notna()]
    sources = _nunique(df.assign(source=df["source"].fillna("unknown")), ["key", "canonical", "source"])
    df = df.sort_values("confidence", ascending=False, na_position="last", kind="stable")
    df = df.drop_duplicates(["product_id", "key", "canonical"]).sort_values(["product_id", "key", "canonical"])
    is_held = pd.Series([(k, v) in held for k, v in zip(df["key"], df["canonical"])], index=df.index, dtype=bool)
    held_counts = _nunique(df[is_held], ["key", "canonical"])
    df = df[~is_held]
    table = pa.table({"product_id": df["product_id"].astype(str).tolist(), "key": df["key"].tolist(),
                      "value": df["canonical"].tolist(), "source": df["source"].tolist(),
                      "confidence": df["confidence"].tolist(), "raw": df["clean"].tolist()})
    return table, CuratedCounts(value_stats(table), sources, held_counts)
