"""Configuration of feed construction, landing pages and the feed API."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from pinlanding.collections.strict import StrictModel


class AnnConfig(StrictModel):
    """Embedding-similarity matching (used when ``feeds.matching`` is ``ann``)."""

    neighbours: int = 200  # nearest products retrieved per topic
    min_similarity: float = 0.5  # cosine below this is not a candidate
    weight: float = 0.3  # share of the final score that comes from similarity
    seeds: int = 50  # top attribute-matched products whose mean embedding is the topic vector
    index: str = "numpy"  # a registered pinlanding.encoders.index retrieval index
    method: str = "exact"  # exact cosine | hamming (binarized codes)
    rerank: int = 0  # hamming only: re-score rerank * neighbours codes exactly


class FeedsConfig(StrictModel):
    # strict: a product must carry every attribute of the topic; overlap: at least `min_overlap` of them;
    # ann: overlap candidates plus embedding neighbours of the topic (needs assignments/embeddings.parquet)
    matching: Literal["strict", "overlap", "ann"] = "strict"
    min_overlap: float = 0.5  # >= 1: an attribute count; < 1: a share of the topic's attributes (overlap/ann)
    pruning: bool = True  # join on (key, value) with the rarest-attribute probe; false: naive cross join
    # strict matching with pruning: exact top-K (K = max(candidate_pool, max_products)) scoring the first
    # topk_prefix * K products of each topic's probe list first (the first K where the probe holds all the
    # topic's attributes), the rest only where the bound is not met; 0: score every candidate (the
    # rarest-attribute join)
    topk_prefix: int = Field(2, ge=0)
    # ... on catalogues of at least this many assigned products: below, its fixed Spark costs outweigh what it
    # saves (dev catalogue, 30,718 products: ~25 s against ~10 s scoring every candidate); both are exact
    topk_min_products: int = Field(200_000, ge=0)
    min_confidence: float = 0.7  # assignments below this are ignored (the trade-off measured: docs/feeds.md)
    key_weights: dict[str, float] = Field(default_factory=dict)  # per attribute key; default 1.0
    max_products: int = 200  # feed length kept per topic
    min_feed_size: int = 10  # thinner feeds are dropped
    category_key: str = "category"  # assignment key whose agreement is the category conformity
    min_conformity: float = 0.6  # share of products in the feed's majority category
    ann: AnnConfig = AnnConfig()
    candidate_pool: int = 1000  # best-scored products per topic that variants and diversity choose from
    variants: bool = True  # near-identical products (same brand and normalized title, or photo) share one card
    # a broad feed interleaves the values of these keys when the topic does not name them ([] keeps score order)
    diversify_keys: list[str] = Field(default_factory=lambda: ["gender", "category", "color", "colour", "brand"])
    diversify_band: float = Field(0.1, ge=0.0)  # interleave within score bands this wide (0: across the whole feed)
    duplicate_page: int = 24  # first-page length compared between feeds
    duplicate_share: float = Field(0.8, gt=0.0, le=1.0)  # a feed sharing this much of another's first page merges


    @property
    def pool_size(self) -> int:
        """K: the candidates ranked per topic before variants and diversity choose the feed."""
        return max(self.candidate_pool, self.max_products)


class SiteConfig(StrictModel):
    products_per_page: int = Field(48, ge=1, le=500)
    related: int = Field(6, ge=0, le=50)  # related collections linked from each page
    title: str = "Collections"
    link_images: bool = True  # hard-link product photos into site/images (copy when linking fails)
    # where the site will be served, e.g. https://shop.example/collections/: canonical links, Open Graph, the
    # sitemap and robots.txt use absolute URLs under it; unset, every URL stays relative to the page
    base_url: str | None = None
    hub_key: str = "category"  # attribute whose values get a hub page each and group the home page
    home_collections: int = Field(8, ge=1, le=100)  # collections shown (with a thumbnail) per hub on the home page
    hub_popular: int = Field(12, ge=0, le=100)  # biggest collections shown with a thumbnail at the top of a hub
    sitemap_max_urls: int = Field(50_000, ge=1, le=50_000)  # per sitemap file (the protocol's limit); more: an index
    larger_images: bool = True  # also publish a photo's larger sizes (sibling folders images_224/, ...) as srcset
    similar: int = Field(6, ge=0, le=24)  # products on each product's "similar items" page (0: no such pages)

    @field_validator("base_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError(f"site.base_url must be an absolute http(s) URL without query or fragment, got {value!r}")
        return value if value.endswith("/") else value + "/"


class ServeConfig(StrictModel):
    """`pinlanding serve`: the read-only feed API for the search team (see feeds/api.py)."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    max_page_size: int = Field(100, ge=1, le=1000)
    default_page_size: int = Field(20, ge=1, le=1000)
    max_query_chars: int = Field(1000, ge=1, le=10000)
    max_batch: int = Field(10000, ge=1, le=100000)  # queries in one POST /search/batch
    sentence_model: str = "all-MiniLM-L6-v2"  # embeds the words a query parse leaves unexplained
    embed_words: bool = True  # false: parse only (no sentence model is loaded)
    embed_threshold: float = Field(0.85, ge=0.0, le=1.0)  # cosine at which a word is read as a vocabulary value
    embed_category_threshold: float = Field(0.9, ge=0.0, le=1.0)  # ... as a product type
    max_embedded_words: int = Field(8, ge=0, le=100)  # per query
    # how long /search waits for a word it has never embedded: past it (at once, by default) the answer goes out
    # without that word (listed as pending, not cached) and the embedding finishes in the background for the next
    # request. /search/batch always waits. A forward pass costs ~25 ms of a core here, more than /search's budget.
    embed_wait_ms: float = Field(0.0, ge=0.0)
    # unnamed_product: embed leftover words only when the parse finds no product type; all: also to fill
    # attribute families the parse left open beside a named product (costlier; see benchmarks/RESULTS.md)
    embed_scope: Literal["unnamed_product", "all"] = "unnamed_product"
    embedding_cache_words: int = Field(50000, ge=0)  # query words whose vectors are kept (LRU)
    cache_embeddings: bool = True  # keep the vectors in api_embeddings.npz beside versions_dir for the next start
    cors_origins: list[str] = Field(default_factory=list)  # browser origins allowed to call the API; none by default
    cache_max_age: int = Field(300, ge=0)  # Cache-Control max-age (seconds) of cacheable responses
    versions_dir: str | None = None  # recorded feed versions for /changes (default <run>/feeds/versions)
    record_versions: bool = True  # record the served version there at start
    access_log: bool = False  # one log line per request (costs a few percent of throughput)
    # visual search (feeds/visual_api.py): the run's visual index searched by a registered retrieval backend,
    # Hamming over binarized codes with the rerank * k nearest re-scored exactly (or exact cosine)
    visual_backend: str = "faiss"  # a registered pinlanding.encoders.index retrieval index (faiss, numpy)
    visual_method: Literal["hamming", "exact"] = "hamming"
    visual_rerank: int = Field(10, ge=0, le=100)
    # ranking bonus per attribute a similar product shares with the query (None: encoders.visual.FACET_WEIGHTS)
    visual_facet_weights: dict[str, float] | None = None
    item_collections: int = Field(5, ge=0, le=100)  # collections listed per similar product
    max_upload_bytes: int = Field(8_000_000, ge=1)  # POST /search/image body
    max_upload_pixels: int = Field(40_000_000, ge=1)  # larger photos (and decompression bombs) are refused
