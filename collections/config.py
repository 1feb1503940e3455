"""Typed pipeline configuration: loaded from YAML, overridable with ``key.path=value`` strings.

Each stage package owns its own section model (``pinlanding.vocab.config`` ...); this module holds
the shared sections and composes them into :class:`PipelineConfig`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from pinlanding.collections.strict import StrictModel
from pinlanding.encoders.config import AssignConfig, EncoderConfig
from pinlanding.evaluation.config import EvaluationConfig
from pinlanding.feeds.config import FeedsConfig, ServeConfig, SiteConfig
from pinlanding.vocab.config import ExtractConfig, TopicsConfig, VocabConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
DEFAULT_CONFIG = CONF_DIR / "default.yaml"


class RunConfig(StrictModel):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"


class CatalogConfig(StrictModel):
    format: Literal["auto", "myntra", "jsonl", "csv", "parquet"] = "auto"
    # generic readers: normalized field -> input column (merchant_tags may be a list or a separator-joined string)
    field_mapping: dict[str, str] = Field(default_factory=dict)
    tags_separator: str = ","
    image_root: str | None = None  # folder that relative image paths are resolved against
    currency: str = "INR"
    max_title_chars: int = 300
    max_description_chars: int = 5000
    max_tags: int = 50
    verify_images: bool = True  # decode every image header; corrupt ones are quarantined
    # products without a photo: None = required for Myntra and where field_mapping names image_path, else optional
    require_images: bool | None = None
    allow_external_images: bool = False  # image paths may resolve outside the catalogue / image_root
    part_rows: int = Field(10_000, ge=1)  # products per part of every per-product artifact (collections/parts.py)


class RayConfig(StrictModel):
    address: str | None = None  # None: start a local Ray; "auto" or "ray://host:10001" for a cluster
    num_cpus: int | None = None
    num_gpus: int | None = None
    object_store_memory: int = 1_000_000_000
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    part_tasks: bool = False  # run per-part steps (vocab, topics, train, site) as Ray tasks instead of here


class SparkConfig(StrictModel):
    master: str = "local[*]"
    app_name: str = "pinlanding"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    conf: dict[str, str] = Field(default_factory=dict)


class PipelineConfig(StrictModel):
    run: RunConfig = RunConfig()
    catalog: CatalogConfig = CatalogConfig()
    ray: RayConfig = RayConfig()
    spark: SparkConfig = SparkConfig()
    extract: ExtractConfig = ExtractConfig()
    vocab: VocabConfig = VocabConfig()
    topics: TopicsConfig = TopicsConfig()
    encoder: EncoderConfig = EncoderConfig()
    assign: AssignConfig = AssignConfig()
    feeds: FeedsConfig = FeedsConfig()
    site: SiteConfig = SiteConfig()
    serve: ServeConfig = ServeConfig()
    evaluation: EvaluationConfig = EvaluationConfig()


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"cannot set '{dotted}': '{part}' is a value, not a section")
        node = child
    node[leaf] = value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load ``conf/default.yaml``, merge ``path`` over it, then apply ``key.path=value`` overrides."""
    tree = yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
        tree = _merge(tree, yaml.safe_load(path.read_text()) or {})
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override '{item}' must look like key.path=value")
        key, raw = item.split("=", 1)
        _set_path(tree, key.strip(), yaml.safe_load(raw))
    return PipelineConfig.model_validate(tree)
