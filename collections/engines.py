"""Sessions of the execution engines every stage shares: Ray (model stages) and Spark (feeds).

Imports are lazy so a stage that needs neither engine never pays for them.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from pinlanding.collections.config import RayConfig, SparkConfig

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession


def torch_device(requested: str = "auto") -> str:
    """Resolve ``auto`` to ``cuda`` when a GPU is visible, else ``cpu``."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Connect to (or start) Ray for the duration of the block; shut it down only if we started it."""
    import ray

    started = False
    if not ray.is_initialized():
        kwargs: dict = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False}
        if cfg.address:
            kwargs["address"] = cfg.address
        else:
            kwargs.update(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, object_store_memory=cfg.object_store_memory)
        if cfg.runtime_env:
            kwargs["runtime_env"] = cfg.runtime_env
        ray.init(**kwargs)
        started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = True
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def spark_session(cfg: SparkConfig) -> "SparkSession":
    """Get or create the Spark session described by ``cfg`` (UI off, loopback when local)."""
    if cfg.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(cfg.master)
        .appName(cfg.app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
    )
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
