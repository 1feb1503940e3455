"""Shared behaviour of the model backends (openai, transformers, vllm): prompt, generate, parse.

A subclass implements ``_generate(rows) -> list[str | GenerationError]``, one answer per prepared
row. Everything else is common: images as data URLs, parsing and repair of each answer, and one
per-product :class:`Outcome` (attributes, or a failure with the raw text), so one bad answer never
fails its batch.
"""
from __future__ import annotations

import base64
from typing import Any

import numpy as np

from pinlanding.vocab.extractors.base import Outcome, batch_rows, outcomes_to_batch
from pinlanding.vocab.extractors.prompting import Prompt, load_prompt
from pinlanding.vocab.parsing import OutputError, parse_model_output


class GenerationError(Exception):
    """A product the model could not answer for; ``kind`` is recorded (transient kinds are not cached)."""

    def __init__(self, kind: str, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.raw = raw


def data_url(jpeg: bytes | None) -> str | None:
    """``data:image/jpeg;base64,...`` for prepared JPEG bytes (None without an image)."""
    return f"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}" if jpeg else None


class ModelExtractor:
    """Base of the backends that prompt a (vision-)language model for JSON attributes."""

    name = "model"
    image_mode = "jpeg"
    model: str = ""
    prompt: str = "extract-v1"
    send_images: bool = True

    @property
    def prompt_(self) -> Prompt:
        return load_prompt(self.prompt)

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "model": self.model, "prompt_version": self.prompt_.version}

    def refiner(self) -> None:
        return None

    def image_url(self, row: dict[str, Any]) -> str | None:
        return data_url(row.get("image_jpeg")) if self.send_images else None

    def _generate(self, rows: list[dict[str, Any]]) -> list[str | GenerationError]:
        raise NotImplementedError

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = batch_rows(batch)
        try:
            answers = self._generate(rows)
        except Exception as exc:  # a backend crash becomes a per-product failure, retried on the next run
            answers = [GenerationError("backend_error", f"{type(exc).__name__}: {exc}") for _ in rows]
        return outcomes_to_batch([self._outcome(row, ans) for row, ans in zip(rows, answers)])

    def _outcome(self, row: dict[str, Any], answer: str | GenerationError) -> Outcome:
        pid, chash = row["product_id"], row["content_hash"]
        if isinstance(answer, GenerationError):
            return Outcome(pid, chash, error_kind=answer.kind, error=f"{answer.kind}: {answer}", raw=answer.raw)
        try:
            parsed = parse_model_output(answer, source=self.name)
        except OutputError as exc:
            return Outcome(pid, chash, error_kind=exc.kind, error=str(exc), raw=answer if isinstance(answer, str) else "")
        note = "; ".join(parsed.notes)
        return Outcome(pid, chash, parsed.attributes, raw=answer, aux={"notes": note} if note else None)
