"""Stand-in inputs for benchmarks and tests, never used by a pipeline run (importable as ``standins``:
benchmarks run beside it, pytest's ``pythonpath`` lists this folder).

- :func:`write_myntra_slice`: a small Myntra folder cut from the real catalogue, merchant fields only.

- :func:`title_assignments` / :func:`title_topics`: a quick, realistic assignments table and topic set
  derived from real product titles ("Women Blue Tops" -> gender, color, category), for experiments
  before (or without) the upstream stages.
- :func:`generated_frames`: a catalogue of any size generated inside Spark (1,000,000 products x
  20,000 topics in the benchmark), with skewed (Zipf-like) attribute values like a real catalogue.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from pinlanding.collections.catalog import MYNTRA_IMAGE_DIR
from pinlanding.collections.schemas import ASSIGNMENTS, TOPICS

# the merchant's fields of a Myntra record: what a slice keeps (the ground-truth labels stay out)
MYNTRA_INPUT_FIELDS = ("id", "productDisplayName", "brandName", "price", "discountedPrice", "descriptors",
                       "displayCategories", "landingPageUrl")

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

GENDERS = {"men": "men", "women": "women", "boys": "boys", "girls": "girls", "unisex": "unisex", "kids": "kids"}
COLORS = ("black", "white", "blue", "navy", "red", "green", "grey", "brown", "pink", "purple", "yellow", "orange",
          "maroon", "beige", "cream", "olive", "teal", "silver", "gold", "khaki", "charcoal", "magenta", "peach")


def _confidence(*parts: str) -> float:
    """A stable pseudo-confidence in [0.5, 1.0] (varies per pair so ranking has something to order)."""
    return 0.5 + int(hashlib.sha1("|".join(parts).encode()).hexdigest()[:6], 16) / 0xFFFFFF / 2


def title_assignments(products: pa.Table) -> pa.Table:
    """(product_id, key, value, confidence, source) from titles: gender word, colour words, last word as category."""
    rows = []
    for pid, title in zip(products["product_id"].to_pylist(), products["title"].to_pylist()):
        words = re.findall(r"[a-z]+", (title or "").lower())
        if not words:
            continue
        found = {("category", words[-1].rstrip("s") or words[-1])}
        found |= {("gender", GENDERS[w]) for w in words if w in GENDERS}
        found |= {("color", w) for w in words if w in COLORS}
        rows += [{"product_id": pid, "key": k, "value": v, "confidence": _confidence(pid, k, v), "source": "title"}
                 for k, v in sorted(found)]
    return pa.Table.from_pylist(rows, schema=ASSIGNMENTS)


def title_topics(assignments: pa.Table, min_support: int = 20, max_attrs: int = 3) -> pa.Table:
    """Kept topics: every combination (containing a category) of a product's pairs with enough support."""
    per_product: dict[str, list[tuple[str, str]]] = {}
    for pid, k, v in zip(*(assignments[c].to_pylist() for c in ("product_id", "key", "value"))):
        per_product.setdefault(pid, []).append((k, v))
    support: Counter = Counter()
    for pairs in per_product.values():
        pairs = sorted(set(pairs))
        for n in range(1, max_attrs + 1):
            support.update(c for c in combinations(pairs, n) if any(k == "category" for k, _ in c))
    rows = []
    for combo, count in sorted(support.items()):
        if count < min_support:
            continue
        order = {"gender": 0, "color": 1, "category": 2}
        words = [v for _, v in sorted(combo, key=lambda kv: order.get(kv[0], 3))]
        slug = "-".join(words)
        rows.append({"topic_id": hashlib.sha1(slug.encode()).hexdigest()[:12], "slug": slug,
                     "title": " ".join(w.title() for w in words), "query": " ".join(words),
                     "attributes": [{"key": k, "value": v} for k, v in combo], "support": count,
                     "judge_score": round(min(1.0, 0.5 + count / 2000), 4), "status": "kept", "reason": None})
    return pa.Table.from_pylist(rows, schema=TOPICS)


# Generated catalogue: key -> number of distinct values (values drawn with a Zipf-like skew).
GENERATED_KEYS = {"category": 400, "color": 46, "gender": 5, "pattern": 30, "material": 60, "occasion": 12,
                  "fit": 8, "sleeve": 6, "neck": 15, "style": 80}


def _skewed(col: "object", cardinality: int, salt: int) -> "object":
    """A value index in [0, cardinality) from a hash of ``col``, skewed toward small indexes (u^2 law)."""
    from pyspark.sql import functions as F

    u = (F.abs(F.xxhash64(col, F.lit(salt))) % 1_000_003) / F.lit(1_000_003.0)
    return (u * u * F.lit(cardinality)).cast("int")


def generated_frames(spark: "SparkSession", n_products: int, n_topics: int, attrs_per_product: int = 6,
                     seed: int = 0) -> tuple["DataFrame", "DataFrame"]:
    """(assignments, topics) generated in Spark: products carry ``attrs_per_product`` keys (always a category),
    topics are 2-3 attributes (always a category) sampled from real product attribute sets, so each has support.
    Returns assignments (product_id, key, value, confidence) and topic rows (topic_id, key, value)."""
    from pyspark.sql import functions as F

    keys = list(GENERATED_KEYS)
    products = spark.range(n_products).withColumnRenamed("id", "pid")
    per_key = []
    for i, key in enumerate(keys[:attrs_per_product]):
        per_key.append(products.select(
            F.concat(F.lit("p"), F.col("pid").cast("string")).alias("product_id"), F.lit(key).alias("key"),
            F.concat(F.lit(f"{key}-"), _skewed(F.col("pid"), GENERATED_KEYS[key], seed * 97 + i).cast("string")).alias("value"),
            (F.lit(0.5) + (F.abs(F.xxhash64("pid", F.lit(seed + 1000 + i))) % 1000) / F.lit(2000.0)).alias("confidence"),
        ))
    assignments = per_key[0]
    for df in per_key[1:]:
        assignments = assignments.unionByName(df)
    # each topic = category + 1..2 other attributes of one sampled product
    stride = max(1, n_products // max(n_topics, 1))
    tids = spark.range(n_topics).select(F.col("id").alias("t"),
                                        (F.col("id") * stride % max(n_products, 1)).alias("pid"))
    n_extra = F.when(F.col("t") % 2 == 0, 1).otherwise(2)
    topic_rows = []
    for i, key in enumerate(keys[:attrs_per_product]):
        # category always; other keys chosen by a hash so topics differ in which attributes they fix
        pick = F.lit(True) if key == "category" else (
            (F.abs(F.xxhash64("t", F.lit(seed + i))) % (attrs_per_product - 1)) < n_extra)
        topic_rows.append(tids.where(pick).select(
            F.concat(F.lit("t"), F.col("t").cast("string")).alias("topic_id"), F.lit(key).alias("key"),
            F.concat(F.lit(f"{key}-"), _skewed(F.col("pid"), GENERATED_KEYS[key], seed * 97 + i).cast("string")).alias("value"),
        ))
    topics = topic_rows[0]
    for df in topic_rows[1:]:
        topics = topics.unionByName(df)
    return assignments, topics


def write_myntra_slice(source: Path, out: Path, n: int) -> Path:
    """A Myntra folder at ``out`` with ``n`` records spread evenly over ``source`` (merchant input fields
    only, no ground-truth labels) and an ``images`` link to the real photos (tests, benchmarks)."""
    with gzip.open(source / "styles.jsonl.gz", "rt", encoding="utf-8") as f:
        lines = f.readlines()
    step = max(1, len(lines) // n)
    rows = [json.loads(line) for line in lines[::step][:n]]
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "styles.jsonl.gz", "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: row.get(k) for k in MYNTRA_INPUT_FIELDS}, ensure_ascii=False) + "\n")
    (out / MYNTRA_IMAGE_DIR).symlink_to((source / MYNTRA_IMAGE_DIR).resolve(), target_is_directory=True)
    return out
