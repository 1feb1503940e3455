"""Configuration of evaluation and search-intent analysis."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = 10
    queries: str = "../shared/datasets/search-queries/fashion12k_queries.tsv"
