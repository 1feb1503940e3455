"""Attribute extractors behind one interface, registered by name.

``create_extractor(cfg)`` builds the configured backend: ``embedded`` (offline default), ``openai``,
``transformers`` or ``vllm``. Backend modules are imported on first use (and heavy libraries, such as
torch models, the openai SDK or vLLM, only inside them), so importing this package, or its general-knowledge
``lexicon``, is cheap and free of import cycles.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pinlanding.collections.registry import Registry
    from pinlanding.vocab.config import ExtractConfig
    from pinlanding.vocab.extractors.base import Extractor

__all__ = ["EXTRACTORS", "RESULT_SCHEMA", "Extractor", "Outcome", "create_extractor", "extractor_params",
           "load_backends"]
_BACKEND_MODULES = ("embedded", "model")


def load_backends() -> "Registry[Extractor]":
    """Import the built-in backends (each registers itself) and return the registry."""
    for module in _BACKEND_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    from pinlanding.vocab.extractors.base import EXTRACTORS

    return EXTRACTORS


def extractor_params(cfg: "ExtractConfig") -> dict[str, Any]:
    """Constructor arguments of the configured backend: its options section, the prompt, ``params``."""
    options = {"embedded": cfg.embedded, "openai": cfg.openai, "transformers": cfg.transformers,
               "vllm": cfg.vllm}.get(cfg.backend)
    params: dict[str, Any] = options.model_dump() if options is not None else {}
    if cfg.backend != "embedded":
        params["prompt"] = cfg.prompt
    return {**params, **cfg.params}


def create_extractor(cfg: "ExtractConfig") -> "Extractor":
    """The configured extractor (unknown names list the registered ones)."""
    return load_backends().create(cfg.backend, **extractor_params(cfg))


def __getattr__(name: str) -> Any:
    if name in {"EXTRACTORS", "RESULT_SCHEMA", "Extractor", "Outcome"}:
        from pinlanding.vocab.extractors import base

        if name == "EXTRACTORS":
            load_backends()
        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
