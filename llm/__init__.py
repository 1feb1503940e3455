"""One model-client layer: every language model the pipeline asks, behind one small interface.

:class:`LanguageModel` has two batched calls, ``generate(conversations, schema)`` (chat messages to
answer text, constrained to a JSON schema where the backend can) and ``yes_probability(prompts)``
(P(yes) of a yes/no question). Backends, registered in :data:`MODELS` by name and imported lazily:
``openai`` (any OpenAI-compatible HTTP endpoint, through the ``openai`` SDK; the only module that
sends HTTP to model servers), ``transformers`` (a local Hugging Face model) and ``vllm`` (an
in-process engine, the optional extra ``pinlanding[vllm]``). The attribute extractors and the topic
judge both build their model here.
"""
from __future__ import annotations

import importlib
from typing import Any

from pinlanding.llm.base import MODELS, GenerationError, LanguageModel, Messages, data_url, yes_share

_BACKEND_MODULES = {"openai": "openai_chat", "transformers": "hf", "vllm": "vllm_engine"}


def create_model(backend: str, **options: Any) -> LanguageModel:
    """The named backend built from its options; unknown names list the known ones."""
    if backend in _BACKEND_MODULES:
        importlib.import_module(f"{__name__}.{_BACKEND_MODULES[backend]}")
    return MODELS.create(backend, **options)


__all__ = ["MODELS", "GenerationError", "LanguageModel", "Messages", "create_model", "data_url", "yes_share"]
