"""Validation and safe repair of model output into normalized (key, value, confidence) attributes.

A model answers with JSON text; this module turns that text into :class:`Attribute` rows or raises
:class:`OutputError` with a stable ``kind`` (``empty``, ``too_long``, ``invalid_json``, ``wrong_type``,
``no_attributes``). Repairs are limited to ones that cannot change meaning: code fences, prose around
one JSON object, trailing commas, Python-literal quoting. Keys and values are normalized (lowercase,
NFKC, markup and emoji removed); out-of-schema keys are kept when they look like attribute names
(the output is meant to be open-vocabulary) and dropped with a note otherwise.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from pinlanding.collections.text import key_form, one_line
from pinlanding.vocab.extractors.lexicon import COLOR_SYNONYMS, GENDER, KEY_SYNONYMS

MAX_RAW_CHARS = 20_000
MAX_VALUE_CHARS = 60
MAX_VALUES_PER_KEY = 8
MAX_KEYS = 40

_KEY_OK = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_VALUE_DROP = re.compile(r"[^\w\s&'/.%+\-]", re.UNICODE)
_SPACES = re.compile(r"\s+")
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


class OutputError(ValueError):
    """Model output that cannot be used; ``kind`` is a stable code recorded in failures.parquet."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class Attribute:
    key: str
    value: str
    confidence: float
    source: str = "model"
    raw: str = ""  # the text the value was read from, before normalization


@dataclass
class Parsed:
    attributes: list[Attribute]
    notes: list[str] = field(default_factory=list)


class _Item(BaseModel):
    """One attribute in list form: {"key": ..., "value": ..., "confidence": ...}."""

    model_config = ConfigDict(extra="ignore")
    key: str
    value: Union[str, int, float, list[Union[str, int, float]]]
    confidence: Any = Field(default=None)  # validated by _confidence (bad values -> the default)


class _ListForm(BaseModel):
    model_config = ConfigDict(extra="ignore")
    attributes: list[_Item]


_FLAT = TypeAdapter(dict[str, Any])


def canonical_key(key: Any) -> str | None:
    """``"Sleeve Length"`` -> ``"sleeve"``; None when it does not look like an attribute name.

    :func:`~pinlanding.collections.text.key_form` plus the extractors' key synonyms: model output is
    open-vocabulary, so ``fabric`` and ``material`` must meet in one key before curation.
    """
    if not isinstance(key, str):
        return None
    k = key_form(one_line(key))
    k = KEY_SYNONYMS.get(k, k)
    return k if _KEY_OK.match(k) else None


def canonical_value(key: str, value: Any) -> str | None:
    """Lowercase value text with the extractors' colour and gender synonyms (``"Gray"`` -> ``"grey"``), or None
    when empty or over-long after cleaning. Curation's grouping form is another thing:
    :func:`pinlanding.vocab.clustering.normalize_value` (``"T-Shirts"`` -> ``"tshirt"``)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    v = one_line(value).lower()
    v = _VALUE_DROP.sub(" ", v)  # emoji, symbols, brackets
    v = _SPACES.sub(" ", v).strip(" -_./&'")
    if not v or len(v) > MAX_VALUE_CHARS:
        return None
    if key == "color":
        v = COLOR_SYNONYMS.get(v, v)
    elif key == "gender":
        v = GENDER.get(v, v)
    return v


def _candidates(text: str) -> list[str]:
    """Texts to try parsing, most literal first: as is, inside code fences, the outermost {...}."""
    out = [text]
    out += [m.group(1) for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        out.append(text[start : end + 1])
    return out


def _load(text: str) -> tuple[Any, list[str]]:
    notes: list[str] = []
    for i, cand in enumerate(_candidates(text)):
        for label, fix in (("", lambda s: s), ("trailing commas removed", lambda s: _TRAILING_COMMA.sub(r"\1", s))):
            try:
                obj = json.loads(fix(cand))
            except (json.JSONDecodeError, RecursionError):
                continue
            if i:
                notes.append("json extracted from surrounding text")
            if label:
                notes.append(label)
            return obj, notes
        try:  # single-quoted dicts: literal_eval only builds literals, it never runs code
            if len(cand) <= MAX_RAW_CHARS and cand.lstrip().startswith("{"):
                obj = ast.literal_eval(cand)
                notes.append("python literal quoting repaired")
                return obj, notes
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    raise OutputError("invalid_json", "no JSON object could be parsed from the output")


def _confidence(value: Any, default: float) -> float:
    try:
        c = float(value)
    except (TypeError, ValueError):
        return default
    return default if c != c else min(1.0, max(0.0, c))  # NaN -> default


def parse_model_output(text: Any, default_confidence: float = 0.7, source: str = "model") -> Parsed:
    """Parse a model's answer into attributes; raises :class:`OutputError` when nothing usable is in it."""
    if not isinstance(text, str) or not text.strip():
        raise OutputError("empty", "the model returned no text")
    if len(text) > MAX_RAW_CHARS:
        raise OutputError("too_long", f"{len(text)} characters, limit {MAX_RAW_CHARS}")
    obj, notes = _load(text)
    if not isinstance(obj, dict):
        raise OutputError("wrong_type", f"expected a JSON object, got {type(obj).__name__}")

    pairs: list[tuple[Any, Any, Any]] = []
    if "attributes" in obj and isinstance(obj["attributes"], list):
        try:
            items = _ListForm.model_validate(obj).attributes
        except ValidationError as exc:
            raise OutputError("wrong_type", f"attributes list malformed: {exc.errors()[0]['msg']}") from exc
        pairs = [(it.key, it.value, it.confidence) for it in items]
    else:
        try:
            flat = _FLAT.validate_python(obj)
        except ValidationError as exc:
            raise OutputError("wrong_type", "object keys must be strings") from exc
        for key, value in flat.items():
            conf = None
            if isinstance(value, dict):  # {"value": ..., "confidence": ...}
                conf, value = value.get("confidence"), value.get("value")
            pairs.append((key, value, conf))

    attrs: list[Attribute] = []
    seen: set[tuple[str, str]] = set()
    per_key: dict[str, int] = {}
    for raw_key, raw_value, conf in pairs:
        key = canonical_key(raw_key)
        if key is None:
            notes.append(f"dropped key {str(raw_key)[:40]!r}")
            continue
        values = raw_value if isinstance(raw_value, list) else [raw_value]
        for raw in values:
            if isinstance(raw, (dict, list)):
                notes.append(f"dropped nested value under {key!r}")
                continue
            value = canonical_value(key, raw)
            if value is None:
                if raw not in (None, "", False):
                    notes.append(f"dropped value under {key!r}")
                continue
            if (key, value) in seen:
                continue
            if per_key.get(key, 0) >= MAX_VALUES_PER_KEY or (key not in per_key and len(per_key) >= MAX_KEYS):
                notes.append(f"dropped extra value under {key!r}")
                continue
            seen.add((key, value))
            per_key[key] = per_key.get(key, 0) + 1
            attrs.append(Attribute(key, value, _confidence(conf, default_confidence), source, str(raw)[:200]))
    if not attrs:
        raise OutputError("no_attributes", "the output parsed but held no usable key-value pair")
    return Parsed(attrs, notes)
