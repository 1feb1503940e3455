"""Downstream stages for pipeline tests: each counts its runs in CALLS."""
from __future__ import annotations

from dataclasses import dataclass

from pinlanding.collections.artifacts import AnyPath, read_table, write_text
from pinlanding.collections.schemas import PRODUCTS
from pinlanding.collections.stage_inputs import StageInputs, artifact, external
from pinlanding.evaluation.config import EvaluationConfig

CALLS: list[str] = []


@dataclass(frozen=True)
class IdsInputs(StageInputs):
    outputs = ("report",)
    catalog: AnyPath = artifact("catalog")


def ids_stage(cfg: EvaluationConfig, inputs: IdsInputs) -> dict:
    CALLS.append("ids")
    ids = read_table(inputs.layout.products, PRODUCTS).column("product_id").to_pylist()
    write_text(inputs.layout.dir("report") / "ids.txt", "\n".join(ids))
    return {"ids": len(ids)}


@dataclass(frozen=True)
class QueriesInputs(StageInputs):
    outputs = ("topics",)
    queries: AnyPath | None = external("evaluation.queries")


def queries_stage(cfg: EvaluationConfig, inputs: QueriesInputs) -> dict:
    """Copies the search log it declares."""
    CALLS.append("queries")
    write_text(inputs.layout.dir("topics") / "queries.txt", inputs.queries.read_text())
    return {"bytes": inputs.queries.stat().st_size}


def undeclared_stage(cfg: EvaluationConfig, inputs: IdsInputs) -> dict:
    """Reads a folder its inputs type does not list."""
    return {"topics": inputs.layout.topics.exists()}
