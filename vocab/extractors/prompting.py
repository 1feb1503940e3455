"""Versioned prompt templates (``conf/prompts/<name>.yaml``) and the JSON schema of the answer.

A prompt file holds a ``system`` and a ``user`` Jinja2 template. Its version is its name plus the
digest of its bytes, so editing a prompt changes the cache key and re-extracts every product.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from pinlanding.collections.config import CONF_DIR
from pinlanding.vocab.extractors.lexicon import CORE_KEYS

PROMPTS_DIR = CONF_DIR / "prompts"

# The answer: an object of attribute lists; structured-decoding backends constrain generation to it.
_VALUES = {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 8}
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {key: _VALUES for key in CORE_KEYS},
    "additionalProperties": _VALUES,
}


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: str
    user: str

    def messages(self, row: dict[str, Any], image_url: str | None = None) -> list[dict[str, Any]]:
        """OpenAI-style chat messages for one prepared product row (image first, when given)."""
        text = _ENV.from_string(self.user).render(**_fields(row))
        content: list[dict[str, Any]] | str = text
        if image_url:
            content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": text}]
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]

    def text(self, row: dict[str, Any]) -> str:
        """System and user text as one plain prompt (for models without a chat template)."""
        return f"{self.system}\n{_ENV.from_string(self.user).render(**_fields(row))}\nJSON:"


# Sandboxed: product text is only ever a value, but a template file should not reach Python internals.
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    price = row.get("price")
    price_ok = isinstance(price, (int, float)) and not math.isnan(price)
    tags = row.get("merchant_tags") or "[]"
    return {
        "title": row.get("title") or "",
        "brand": row.get("brand") or "",
        "description": row.get("description") or "",
        "tags": json.loads(tags) if isinstance(tags, str) else list(tags),
        "price_text": f"{price:.2f} {row.get('currency') or ''}".strip() if price_ok else "unknown",
    }


@lru_cache(maxsize=16)
def load_prompt(name: str, prompts_dir: Path = PROMPTS_DIR) -> Prompt:
    """Load ``<prompts_dir>/<name>.yaml``; the error lists the prompts that exist."""
    path = prompts_dir / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in prompts_dir.glob("*.yaml"))
        raise ValueError(f"unknown prompt '{name}'; known: {known} (in {prompts_dir})")
    raw = path.read_bytes()
    spec = yaml.safe_load(raw) or {}
    missing = [k for k in ("system", "user") if not isinstance(spec.get(k), str)]
    if missing:
        raise ValueError(f"prompt file {path} lacks {missing}")
    return Prompt(name, f"{name}@{hashlib.sha256(raw).hexdigest()[:12]}", spec["system"].strip(), spec["user"].strip())
