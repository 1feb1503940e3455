"""Configuration of attribute extraction and vocabulary curation."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pinlanding.collections.strict import StrictModel


class EmbeddedOptions(StrictModel):
    """The offline default: text rules, image colours, MiniLM title embeddings, catalogue statistics."""

    sentence_model: str = "all-MiniLM-L6-v2"  # packaged and verified; or a local sentence-transformers path
    device: str = "auto"
    encode_batch_size: int = 256
    use_embeddings: bool = True  # neighbour votes for products whose title gives no type / gender
    min_support: int = 5  # a title phrase is a category when at least this many products use it ...
    min_support_share: float = 0.0003  # ... and at least this share of the catalogue
    compound_min_share: float = 0.05  # "casual shoes" beats "shoes" when it covers this share of "shoes"
    knn_k: int = 10
    knn_min_vote: float = 0.5
    knn_min_similarity: float = 0.5
    knn_reference_share: float = 0.15  # hash-sampled share of products embedded as voters
    knn_max_voters: int = 50_000  # voters the refine pass holds at most (a hash-ranked sample beyond that)


class OpenAIOptions(StrictModel):
    """Any OpenAI-compatible chat completions endpoint (vllm serve, llama.cpp server, ...)."""

    base_url: str = ""  # required: the endpoint, e.g. http://127.0.0.1:8000/v1 for `vllm serve`
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable holding the key (may be unset)
    send_images: bool = True  # images as data URLs
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    temperature: float = 0.0
    max_tokens: int = 400
    timeout_s: float = 60.0
    max_retries: int = 3  # the openai SDK's exponential backoff, honouring Retry-After
    max_concurrency: int = 8  # requests in flight per actor


class TransformersOptions(StrictModel):
    """A local Hugging Face VLM or text LLM loaded from a path."""

    model: str = ""  # local folder (no hub downloads here)
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    max_new_tokens: int = 256
    send_images: bool = True  # when the model has an image processor
    generate_batch_size: int = 8


class VLLMOptions(StrictModel):
    """An in-process vLLM engine with JSON-schema constrained decoding (pip install pinlanding[vllm])."""

    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    max_new_tokens: int = 400
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    send_images: bool = True
    dtype: str = "auto"


class ExtractConfig(StrictModel):
    """Attribute extraction: the backend, its options, the prompt, and how the Ray job runs."""

    backend: str = "embedded"  # embedded | openai | transformers | vllm
    prompt: str = "extract-v1"  # conf/prompts/<prompt>.yaml (its content digest is the prompt version)
    engine: Literal["ray", "local"] = "ray"  # local: same code in-process, for tiny catalogues and tests
    batch_size: int = 1024  # products per Ray Data batch (and per cache part file)
    actors: int = 2  # model actors (each also preprocesses: Ray fuses the two steps)
    actor_cpus: float = 0.75  # logical CPUs per actor; with preprocess_cpus they must fit the cluster together
    actor_gpus: float | None = None  # None: 1 per actor when the cluster has GPUs and the backend uses one
    preprocess_tasks: int = 1  # concurrent CPU preprocessing tasks
    preprocess_cpus: float = 0.25  # logical CPUs per preprocessing task
    image_max_side: int = 448  # images sent to a model are downscaled to this
    max_description_chars: int = 1500
    cache: bool = True  # reuse results keyed by (content hash, backend, model, prompt version)
    compact_after_parts: int = 64  # merge the cache's part files once there are more than this
    embedded: EmbeddedOptions = EmbeddedOptions()
    openai: OpenAIOptions = OpenAIOptions()
    transformers: TransformersOptions = TransformersOptions()
    vllm: VLLMOptions = VLLMOptions()
    params: dict[str, Any] = Field(default_factory=dict)  # extra constructor arguments (plugin backends)


class ClusterConfig(StrictModel):
    """Near-duplicate merging of one key's values (after exact normalization)."""

    # auto: HDBSCAN proposals when a key has >= hdbscan_min_values kept values, else agglomerative
    method: Literal["auto", "hdbscan", "agglomerative", "none"] = "auto"
    model: str = "all-MiniLM-L6-v2"  # sentence-transformers model (packaged, verified) or a local path
    merge_similarity: float = 0.88  # cosine to the canonical needed for any merge (colours sit near 0.75)
    hdbscan_min_values: int = 50
    hdbscan_min_cluster_size: int = 2
    attach_rare: bool = True  # map a value below the frequency floor onto a kept value when similar enough
    attach_max_values: int = 4000  # most frequent rare values considered for attachment, per key
    cannot_link_share: float = 0.2  # values co-occurring on >= this share of the rarer one's products never merge
    fold_plurals: bool = True  # exact normalization folds a trailing plural "s" ("Tshirts" == "Tshirt")
    batch_size: int = 128


class JudgeConfig(StrictModel):
    """The judge that scores candidate topics; ``cooccurrence`` is the offline, non-LLM default."""

    backend: str = "cooccurrence"  # cooccurrence | openai | transformers | vllm
    params: dict[str, Any] = Field(default_factory=dict)  # backend options (model, base_url, ...)
    queries: str = "../shared/datasets/search-queries/fashion12k_queries.tsv"  # real shopper queries (TSV)
    query_column: str = "English query"
    keep_threshold: float = 0.5  # topics scoring below are rejected
    weights: dict[str, float] = Field(
        default_factory=lambda: {"coherence": 0.4, "plausibility": 0.3, "phrasing": 0.3})
    cache: bool = True  # reuse judgements of unchanged (topic, query, statistics) from topics/.judge_cache.json


class TopicsConfig(StrictModel):
    """Candidate topics: attribute tuples with enough supporting products."""

    min_support: int = 10  # = feeds.min_feed_size: support is counted as feeds match (feeds.min_confidence)
    max_arity: int = 4  # 4 on the dev catalogue: 2,974 -> 4,186 collections at the same P@10 (docs/vocabulary.md)
    anchor_keys: list[str] = Field(default_factory=lambda: ["category"])  # a topic must name one (if present)
    # word order of generated queries, as titles read: brand, colour, material or pattern, other modifiers, the
    # product noun, "for <gender>"; keys not listed go just before the last listed key present
    query_order: list[str] = Field(default_factory=lambda: [
        "brand", "color", "colour", "pattern", "material", "season", "occasion", "style", "fit", "shape", "sleeve",
        "neck", "category", "gender"])
    # a part's value names its part ("short" sleeve -> "short sleeve"); see part_nouns
    phrase_templates: dict[str, str] = Field(default_factory=lambda: {
        "gender": "for {value}", "sleeve": "{value} sleeve", "neck": "{value} neck", "fit": "{value} fit"})
    # garment and shoe parts (and "fit"): a value already naming one ("polo collar", "v-neck", "sleeveless", "hood") keeps
    # its own words instead of its key's template, so no title reads "polo collar neck" or "sleeveless sleeve"
    part_nouns: list[str] = Field(default_factory=lambda: [
        "sleeve", "neck", "collar", "hood", "fit", "toe", "heel", "strap", "waist", "hem", "cuff", "lapel", "sole"])
    max_candidates: int = 20000  # highest-support candidates sent to the judge (bounds LLM cost)
    # reject a tuple whose products are at least this share of a shorter candidate's (1: exactly its products).
    # 0.8 on the dev catalogue: P@10 0.912 -> 0.917 but 2,759 -> 2,327 collections, as a support share also
    # rejects tuples whose ranked first page differs from the shorter one's (the feeds stage merges the true
    # duplicates: feeds.duplicate_share); 0 keeps them all
    redundant_share: float = 1.0


class EvidenceConfig(StrictModel):
    """When a value's precision cannot be established from its evidence: it waits for a merchandiser's approval
    (status ``needs_review``, out of the curated attributes and so out of topics)."""

    min_key_coverage: float = 0.05  # a key stated for fewer of the catalogue's products holds all its values
    weak_sources: list[str] = Field(default_factory=lambda: ["neighbors"])  # evidence that only guesses
    max_weak_share: float = 0.5  # a value with at least this share of its products from weak sources only


class VocabConfig(StrictModel):
    min_product_share: float = 0.001  # frequency floor, share of products carrying the key's value
    min_products: int = 3  # and an absolute floor
    max_value_chars: int = 60  # longer values are dropped as "too_long"
    decisions_path: str | None = None  # default: RUN/review/decisions.jsonl
    sample_images: int = 4  # product photos per value in the review app
    category_key: str | None = "category"  # its values must be product types (vocab/categories.py); None: off
    evidence: EvidenceConfig = EvidenceConfig()
    cluster: ClusterConfig = ClusterConfig()
    judge: JudgeConfig = JudgeConfig()  # its queries score values here; the topics stage judges with all of it
