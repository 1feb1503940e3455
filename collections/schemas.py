"""Arrow schemas of every artifact the stages exchange, declared once.

Writers call ``table.cast(schemas.X)`` (or :func:`pinlanding.collections.artifacts.write_table`,
which does it); readers pass ``schema=``. Bump :data:`SCHEMA_VERSION` when a schema changes
incompatibly; it is stored in each Parquet file's metadata and checked on read.
The field-by-field documentation lives in ``docs/schemas.md``.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"

ATTRIBUTE_PAIR = pa.struct([("key", pa.string()), ("value", pa.string())])

# catalog/products.parquet: one row per accepted product.
PRODUCTS = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("merchant_tags", pa.list_(pa.string())),
        pa.field("brand", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("currency", pa.string()),
        pa.field("image_path", pa.string()),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("source_row", pa.int64()),
        pa.field("url", pa.string()),  # the product's own page (absolute http/https), the landing pages' link
    ]
)

# catalog/quarantine.parquet: every input record that was not accepted, with the reason.
QUARANTINE = pa.schema(
    [
        pa.field("source_row", pa.int64()),
        pa.field("product_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("raw", pa.string()),
    ]
)

# attributes/attributes.parquet (raw extraction) and vocabulary/attributes.parquet (curated):
# one row per (product, key, value).
ATTRIBUTES = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("value", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("raw", pa.string()),
    ]
)

# attributes/failures.parquet: products whose model output could not be used.
EXTRACTION_FAILURES = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("backend", pa.string()),
        pa.field("error", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
    ]
)

# vocabulary/merges.parquet: every surface form folded into a canonical value, and how.
VOCAB_MERGES = pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("canonical", pa.string(), nullable=False),
    pa.field("variant", pa.string(), nullable=False),
    pa.field("variant_count", pa.int64()),  # products carrying the variant as extracted
    pa.field("canonical_count", pa.int64()),  # products carrying the canonical value after curation
    pa.field("method", pa.string()),  # normalize | cluster | attach | review
    pa.field("similarity", pa.float64()),  # cosine to the canonical (cluster/attach)
])

# vocabulary/dropped.parquet: every extracted value that did not make it into the vocabulary.
VOCAB_DROPPED = pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("value", pa.string(), nullable=False),  # truncated to 200 characters
    pa.field("product_count", pa.int64()),
    pa.field("reason", pa.string(), nullable=False),  # empty | too_long | markup | no_text | empty_key | rare | rejected
    pa.field("detail", pa.string()),
])

# vocabulary/vocabulary.parquet: the curated vocabulary, one row per canonical (key, value).
VOCAB = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("value", pa.string(), nullable=False),
        pa.field("variants", pa.list_(pa.string())),
        pa.field("product_count", pa.int64()),
        pa.field("status", pa.string()),  # approved | rejected | pending
        pa.field("judge_score", pa.float64()),
        pa.field("provenance", pa.string()),
    ]
)

# topics/topics.parquet: candidate collections (attribute tuples) with their query and judge score.
TOPICS = pa.schema(
    [
        pa.field("topic_id", pa.string(), nullable=False),
        pa.field("slug", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("query", pa.string()),
        pa.field("attributes", pa.list_(ATTRIBUTE_PAIR)),
        pa.field("support", pa.int64()),
        pa.field("judge_score", pa.float64()),
        pa.field("status", pa.string()),  # kept | rejected
        pa.field("reason", pa.string()),
    ]
)

# assignments/assignments.parquet: vocabulary attributes assigned to products.
ASSIGNMENTS = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("value", pa.string(), nullable=False),
        pa.field("confidence", pa.float32()),
        pa.field("source", pa.string()),  # extraction | encoder | extraction+encoder (both gave the value: confidences pooled)
    ]
)

# assignments/embeddings.parquet: one product embedding per product and model version.
EMBEDDINGS = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("content_hash", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("embedding", pa.list_(pa.float32())),
    ]
)

# assignments/visual_index.parquet: the run's visual search index (pinlanding.encoders.visual), partitioned like
# the catalogue: one row per embedded product, its L2-normalized embedding (exact search and re-ranking), its
# sign bits packed into bytes (Hamming search), the keys that tell its near-identical variants apart, and its
# most confident assigned attributes (similar products that share the category and colour rank first).
VISUAL_INDEX = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("content_hash", pa.string()),
        pa.field("variant_key", pa.string()),  # brand and normalized title (pinlanding.vocab.topics.variant_key)
        pa.field("image_digest", pa.string()),  # SHA-256 of the photo's bytes; null without a readable photo
        pa.field("facets", pa.list_(pa.string())),  # "key=value": its most confident value of each assigned key
        pa.field("embedding", pa.list_(pa.float32())),
        pa.field("code", pa.binary()),
    ]
)

# RUN/site.similar.parquet (beside the site, never in it): each shown product's similar products, as the site
# stage last computed them from the visual index; reused while the index, the shown products and ``k`` are the same
# (schema metadata ``pinlanding.similar_key``).
SIMILAR = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("similar", pa.list_(pa.string())),
        pa.field("score", pa.list_(pa.float64())),
    ]
)

# variants: ids of near-identical products (same brand and normalized title, or the same photo) shown as this card
FEED_PRODUCT = pa.struct([("product_id", pa.string()), ("score", pa.float64()), ("variants", pa.list_(pa.string()))])

# feeds/feeds.parquet (and feeds.jsonl): one row per published collection, products in rank order.
FEEDS = pa.schema(
    [
        pa.field("topic_id", pa.string(), nullable=False),
        pa.field("slug", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("query", pa.string()),
        pa.field("attributes", pa.list_(ATTRIBUTE_PAIR)),
        pa.field("products", pa.list_(FEED_PRODUCT)),
        pa.field("judge_score", pa.float64()),
        pa.field("size", pa.int64()),
        pa.field("aliases", pa.list_(pa.string())),  # slugs of merged duplicate feeds, redirected to this one
    ]
)

# feeds/dropped.parquet: topics that did not become a feed, with the reason.
FEEDS_DROPPED = pa.schema(
    [
        pa.field("topic_id", pa.string()),
        pa.field("slug", pa.string()),
        pa.field("title", pa.string()),
        pa.field("reason", pa.string(), nullable=False),  # see pinlanding.feeds.build.REASONS
        pa.field("detail", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("conformity", pa.float64()),
    ]
)
