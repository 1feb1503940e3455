"""The training set of the encoder, gathered part by part: never the whole catalogue in memory.

Each catalog part (collections/parts.py) is read with its curated attributes; its products that have
curated attributes are kept when a hash of their id falls under ``share`` (every product while the
catalogue has at most ``encoder.sample_products``), and per-key value counts are taken over all of its
products, for the single-valued ("exclusive") keys. The driver holds the sample, which is bounded.
"""
from __future__ import annotations

import functools
import hashlib
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pinlanding.collections.artifacts import AnyPath
from pinlanding.collections.config import RayConfig
from pinlanding.collections.engines import map_parts
from pinlanding.collections.parts import count_rows, part_names, read_part
from pinlanding.collections.schemas import ATTRIBUTES, PRODUCTS
from pinlanding.encoders.data import ProductSet, positives_of, ranked_single_valued


@dataclass
class TrainingSample:
    """Sampled products with their positives (indices into the vocabulary), and per-key value counts
    over every product: key -> (products with the key, products with exactly one value of it)."""

    products: ProductSet = field(default_factory=lambda: ProductSet([], [], [], []))
    positives: dict[str, list[int]] = field(default_factory=dict)
    key_counts: Counter = field(default_factory=Counter)
    single_counts: Counter = field(default_factory=Counter)

    def extend(self, other: "TrainingSample") -> None:
        for name in ("ids", "content_hash", "texts", "image_paths"):
            getattr(self.products, name).extend(getattr(other.products, name))
        self.positives.update(other.positives)
        self.key_counts.update(other.key_counts)
        self.single_counts.update(other.single_counts)

    def exclusive_keys(self, share: float, declared: tuple[str, ...] | list[str] = ()) -> list[str]:
        """Keys where at least ``share`` of the products that have the key have exactly one value, and the
        ``declared`` single-valued keys the sample has."""
        return sorted({k for k, n in self.key_counts.items() if n and self.single_counts[k] / n >= share}
                      | (set(declared) & set(self.key_counts)))


def sampled(product_id: str, share: float, seed: int) -> bool:
    """Whether a product is in a ``share`` hash sample (the same products on every run and machine)."""
    if share >= 1.0:
        return True
    return int(hashlib.sha256(f"sample:{seed}:{product_id}".encode()).hexdigest()[:8], 16) < share * 0x100000000


def top_values(attrs: pa.Table, keys: tuple[str, ...] | list[str]) -> pa.Table:
    """``attrs`` (ATTRIBUTES rows) with only the most confident value of each product's ``keys`` (single-valued:
    a product has one colour, and a second colour word names a trim); ties go to the first value in order."""
    if not keys or not attrs.num_rows:
        return attrs
    df = attrs.to_pandas()
    single, ranked = ranked_single_valued(df, keys)
    rows = pd.concat([df[~single], ranked.drop_duplicates(["product_id", "key"])]).sort_index(kind="stable")
    return pa.Table.from_pandas(rows, schema=attrs.schema, preserve_index=False)


def sample_part(name: str, products: AnyPath, curated: AnyPath, vocab: list[tuple[str, str]], share: float,
                seed: int, single_valued: tuple[str, ...] = ()) -> TrainingSample:
    """One catalog part's contribution to the training sample; a product's positives on a ``single_valued`` key
    are its most confident value alone."""
    attrs = read_part(curated, name, ATTRIBUTES, ["product_id", "key", "value", "confidence"])
    per = attrs.group_by(["product_id", "key"]).aggregate([("value", "count_distinct")])
    single = per.filter(pc.equal(per["value_count_distinct"], 1))
    out = TrainingSample(key_counts=Counter(per["key"].to_pylist()), single_counts=Counter(single["key"].to_pylist()))
    positives = positives_of(top_values(attrs, single_valued), vocab)
    table = read_part(products, name, PRODUCTS, ["product_id", "content_hash", "title", "merchant_tags", "image_path"])
    keep = [pid in positives and sampled(pid, share, seed) for pid in table["product_id"].to_pylist()]
    out.products = ProductSet.from_table(table.filter(pa.array(keep, pa.bool_())))
    out.positives = {pid: positives[pid] for pid in out.products.ids}
    return out


def training_sample(products: AnyPath, curated: AnyPath, vocab: list[tuple[str, str]], max_products: int | None,
                    seed: int = 0, ray_cfg: RayConfig | None = None,
                    single_valued: tuple[str, ...] | list[str] = ()) -> TrainingSample:
    """The products with curated attributes, hash-sampled to about ``max_products`` (all when None), in
    catalogue order, with their positives (on a ``single_valued`` key: the most confident value) and the
    per-key counts of every product."""
    n = count_rows(products)
    share = 1.0 if not max_products or n <= max_products else max_products / n
    fn = functools.partial(sample_part, products=products, curated=curated, vocab=vocab, share=share, seed=seed,
                           single_valued=tuple(single_valued))
    total = TrainingSample()
    for part in map_parts(fn, part_names(products), ray_cfg, desc="training sample"):
        total.extend(part)
    return total
