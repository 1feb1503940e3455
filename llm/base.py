"""The interface every model backend implements, and the answer helpers they share."""
from __future__ import annotations

import base64
import math
from typing import Any, Protocol, Sequence

from pinlanding.collections.registry import Registry

Messages = list[dict[str, Any]]  # OpenAI-style chat messages; content is text or a list of text/image_url parts

YES, NO = frozenset({"yes", "y"}), frozenset({"no", "n"})


class GenerationError(Exception):
    """A request the model could not answer; ``kind`` is recorded (transient kinds are retried on the next run)."""

    def __init__(self, kind: str, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.raw = raw


class LanguageModel(Protocol):
    name: str  # the backend
    model: str  # what it runs (a model name or local folder)

    def generate(self, conversations: Sequence[Messages], schema: dict[str, Any] | None = None
                 ) -> list[str | GenerationError]:
        """One answer per conversation, constrained to the JSON ``schema`` where the backend can."""

    def yes_probability(self, prompts: Sequence[str]) -> list[float | GenerationError]:
        """P(yes) / (P(yes) + P(no)) of the first answer token, per prompt."""


MODELS: Registry[LanguageModel] = Registry("language model backend")


def data_url(jpeg: bytes | None) -> str | None:
    """``data:image/jpeg;base64,...`` for JPEG bytes (None without an image)."""
    return f"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}" if jpeg else None


def image_bytes(url: str) -> bytes:
    """The bytes of a base64 data URL (the only image form the pipeline sends)."""
    if not url.startswith("data:") or ";base64," not in url:
        raise ValueError("local models take images as base64 data URLs")
    return base64.b64decode(url.split(";base64,", 1)[1])


def message_text(content: str | list[dict[str, Any]]) -> str:
    """The text of a message's content (image parts dropped)."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def yes_share(top_logprobs: dict[str, float]) -> float | None:
    """P(yes) / (P(yes) + P(no)) from a {token: logprob} map of the first answer token; None if neither."""
    p_yes = sum(math.exp(lp) for tok, lp in top_logprobs.items() if tok.strip().lower() in YES)
    p_no = sum(math.exp(lp) for tok, lp in top_logprobs.items() if tok.strip().lower() in NO)
    return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else None


def no_yes_no(detail: str) -> GenerationError:
    return GenerationError("no_answer", f"no yes/no token in the answer{': ' + detail[:200] if detail else ''}", detail)
