"""The base of every configuration section, a leaf module so stage configs need not import the core."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid")
