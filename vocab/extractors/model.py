"""The model backends (openai, transformers, vllm): a prompt, a :mod:`pinlanding.llm` model, parsing.

Each backend's options build its language model (see :func:`pinlanding.llm.create_model`); the
extractor renders the versioned prompt per product (image as a data URL), asks the model for
answers constrained to :data:`OUTPUT_SCHEMA`, then parses and repairs each answer into one
per-product :class:`Outcome` (attributes, or a failure with the raw text), so one bad answer never
fails its batch.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pinlanding.llm import GenerationError, LanguageModel, create_model, data_url
from pinlanding.vocab.extractors.base import EXTRACTORS, Outcome, batch_rows, outcomes_to_batch
from pinlanding.vocab.extractors.prompting import OUTPUT_SCHEMA, Prompt, load_prompt
from pinlanding.vocab.parsing import OutputError, parse_model_output


class ModelExtractor:
    """Base of the backends that prompt a (vision-)language model for JSON attributes (a Ray callable class)."""

    name = "model"
    image_mode = "jpeg"

    def __init__(self, lm: LanguageModel, prompt: str = "extract-v1", send_images: bool = True) -> None:
        self.lm = lm
        self.prompt = prompt
        self.send_images = send_images

    @property
    def prompt_(self) -> Prompt:
        return load_prompt(self.prompt)

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "model": self.lm.model, "prompt_version": self.prompt_.version}

    def refiner(self) -> None:
        return None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = batch_rows(batch)
        try:
            conversations = [self.prompt_.messages(r, data_url(r.get("image_jpeg")) if self.send_images else None)
                             for r in rows]
            answers = self.lm.generate(conversations, OUTPUT_SCHEMA)
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
            return Outcome(pid, chash, error_kind=exc.kind, error=str(exc), raw=answer)
        note = "; ".join(parsed.notes)
        return Outcome(pid, chash, parsed.attributes, raw=answer, aux={"notes": note} if note else None)


@EXTRACTORS.register("openai")
class OpenAIExtractor(ModelExtractor):
    """Any OpenAI-compatible chat completions endpoint (``extract.openai``; ``base_url`` is required)."""

    name = "openai"

    def __init__(self, prompt: str = "extract-v1", send_images: bool = True, **options: Any) -> None:
        super().__init__(create_model("openai", **options), prompt, send_images)


@EXTRACTORS.register("transformers")
class TransformersExtractor(ModelExtractor):
    """A local Hugging Face VLM or text LLM (``extract.transformers``)."""

    name = "transformers"

    def __init__(self, prompt: str = "extract-v1", send_images: bool = True, generate_batch_size: int = 8,
                 **options: Any) -> None:
        lm = create_model("transformers", images=send_images, batch_size=generate_batch_size, **options)
        super().__init__(lm, prompt, send_images)


@EXTRACTORS.register("vllm")
class VLLMExtractor(ModelExtractor):
    """An in-process vLLM engine (``extract.vllm``; the optional extra ``pinlanding[vllm]``)."""

    name = "vllm"

    def __init__(self, prompt: str = "extract-v1", send_images: bool = True, **options: Any) -> None:
        super().__init__(create_model("vllm", images=send_images, **options), prompt, send_images)
