"""Configuration of attribute extraction and vocabulary curation."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ExtractConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: str = "embedded"


class VocabConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_product_share: float = 0.001
