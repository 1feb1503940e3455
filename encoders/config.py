"""Configuration of the dual encoder and catalogue-wide assignment."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EncoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = 256


class AssignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = 256
