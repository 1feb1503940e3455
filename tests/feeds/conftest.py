"""Fixtures of the feeds tests: a Spark session on local[1]; builders live in feedkit.py."""
from __future__ import annotations

import pytest

from feedkit import make_run

from pinlanding.collections.config import SparkConfig
from pinlanding.collections.pipeline import StageContext


@pytest.fixture(scope="session")
def spark():
    from pinlanding.collections.engines import spark_session

    session = spark_session(SparkConfig(master="local[1]", shuffle_partitions=2, driver_memory="1g"))
    yield session


@pytest.fixture
def run_ctx(tmp_path, spark) -> StageContext:
    return make_run(tmp_path)
