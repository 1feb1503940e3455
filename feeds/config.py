"""Configuration of feed construction, landing pages and the feed API."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FeedsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_feed_size: int = 10


class SiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    products_per_page: int = 48


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = 8765
