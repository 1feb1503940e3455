"""Configuration of evaluation and search-intent analysis."""
from __future__ import annotations

from pydantic import Field

from pinlanding.collections.strict import StrictModel


class EvaluationConfig(StrictModel):
    k: int = Field(10, ge=1, le=1000)  # cutoff of Precision@K, Recall@K, NDCG@K
    # search log (TSV with an "English query" column); relative paths resolve against the working
    # directory, then the project root. Missing: the report says so and skips search intent.
    queries: str = "../shared/datasets/search-queries/fashion12k_queries.tsv"
    query_column: str = "English query"
    head_share: float = Field(0.5, gt=0, lt=1)  # the most frequent intents that make up this share are the head
    thin_feed_size: int = Field(20, ge=1)  # an exactly matching feed smaller than this is thin coverage
    value_head_share: float = Field(0.8, gt=0, lt=1)  # attribute values outside the top ones covering this share are long tail
    sample_collections: int = Field(12, ge=0, le=200)  # collections shown with their images in the HTML reports
    baseline: bool = True  # build and judge the search-log baseline in `pinlanding evaluate`
