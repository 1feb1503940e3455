"""A downstream stage for pipeline tests: counts its runs and copies the product ids."""
from __future__ import annotations

from dataclasses import dataclass

from pinlanding.collections.artifacts import AnyPath, read_table, write_text
from pinlanding.collections.schemas import PRODUCTS
from pinlanding.collections.stage_inputs import StageInputs, artifact
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
