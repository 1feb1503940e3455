"""The extractor interface, its registry, and the per-product result rows every backend returns.

An extractor is a Ray callable class: ``__init__`` only stores parameters (models load lazily on the
first batch, inside the actor), ``__call__`` maps a preprocessed batch (see
:mod:`pinlanding.vocab.extractors.prepare`) to result columns (:data:`RESULT_SCHEMA`), one row per
product. ``refiner()`` returns an optional catalogue-level pass (:class:`Refiner`), run part by part:
the embedded backend uses catalogue statistics there; model backends have none (``None``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from pinlanding.collections.registry import Registry
from pinlanding.vocab.parsing import Attribute

# What a backend returns per product (and what the cache stores).
RESULT_SCHEMA = pa.schema(
    [
        pa.field("product_id", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("attributes", pa.string()),  # JSON list of [key, value, source, confidence, raw]
        pa.field("error_kind", pa.string()),  # "" when the extraction succeeded
        pa.field("error", pa.string()),
        pa.field("raw", pa.string()),  # the model's raw text (truncated), or a note
        pa.field("aux", pa.string()),  # backend-specific JSON kept for refine (e.g. title-phrase candidates)
        pa.field("embedding", pa.binary()),  # backend-specific vector (float16 bytes) kept for refine
    ]
)

# Failures caused by the transport (timeouts, HTTP errors) are not cached: a rerun retries them.
TRANSIENT_ERRORS = frozenset({"timeout", "http_error", "connection_error", "backend_error", "invalid_response"})
RAW_KEEP_CHARS = 4000


@dataclass
class Outcome:
    """One product's extraction result."""

    product_id: str
    content_hash: str
    attributes: list[Attribute] = field(default_factory=list)
    error_kind: str = ""
    error: str = ""
    raw: str = ""
    aux: dict[str, Any] | None = None
    embedding: bytes = b""

    def to_row(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "content_hash": self.content_hash,
            "attributes": json.dumps([[a.key, a.value, a.source, round(a.confidence, 4), a.raw] for a in self.attributes],
                                     ensure_ascii=False),
            "error_kind": self.error_kind,
            "error": self.error[:1000],
            "raw": (self.raw or "")[:RAW_KEEP_CHARS],
            "aux": json.dumps(self.aux, ensure_ascii=False) if self.aux else "",
            "embedding": self.embedding,
        }


def outcomes_to_batch(outcomes: list[Outcome]) -> dict[str, np.ndarray]:
    """Result columns (numpy object arrays, as Ray Data batches are) from outcomes."""
    rows = [o.to_row() for o in outcomes]
    return {name: np.array([r[name] for r in rows], dtype=object) for name in RESULT_SCHEMA.names}


def batch_rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A column batch (dict of arrays or lists) as a list of row dicts."""
    names = list(batch)
    n = len(batch[names[0]]) if names else 0
    return [{k: batch[k][i] for k in names} for i in range(n)]


@runtime_checkable
class Extractor(Protocol):
    """What every backend implements."""

    name: str
    image_mode: str  # what preprocessing prepares: "pixels" (colour analysis), "jpeg" (bytes), "none"

    def identity(self) -> dict[str, str]:
        """backend, model and prompt version: the cache key beside each product's content hash."""
        ...

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Extract a preprocessed batch; one result row per input row, never raising for one bad product."""
        ...

    def refiner(self) -> "Refiner | None":
        """The catalogue-level pass over the results, or None when the attributes are final as extracted."""
        ...


@dataclass
class RefineInput:
    """One catalogue part's successful results (RESULT_SCHEMA) and their ATTRIBUTES rows."""

    name: str  # the part's name (names sort in catalogue order)
    results: pa.Table
    attributes: pa.Table


class Refiner(Protocol):
    """A catalogue-level pass in map/reduce form. For each of ``rounds`` steps, ``collect`` returns one
    part's small partial statistics (it may use what earlier rounds merged) and ``merge`` folds the
    partials, in part order, into the refiner on the driver; then ``apply`` returns one part's final
    ATTRIBUTES rows. The refiner is pickled to the per-part tasks, so its state must stay bounded.
    Optionally, ``shared()`` is a context manager that the stage enters in its Ray session, around the
    extraction job and every round, when the per-part steps run as Ray tasks (``ray.part_tasks``): what
    the tasks should share (the embedded refiner's one model actor) lives for that block."""

    rounds: int

    def collect(self, step: int, part: RefineInput) -> Any: ...

    def merge(self, step: int, partials: list[Any]) -> None: ...

    def apply(self, part: RefineInput) -> pa.Table: ...


def refine_table(refiner: "Refiner | None", results: pa.Table, attributes: pa.Table) -> pa.Table:
    """Run a refiner over one in-memory part (small catalogues, tests); None leaves the attributes as they are."""
    if refiner is None:
        return attributes
    part = RefineInput("part-00000", results, attributes)
    for step in range(refiner.rounds):
        refiner.merge(step, [refiner.collect(step, part)])
    return refiner.apply(part)


EXTRACTORS: Registry[Extractor] = Registry("extractor")
