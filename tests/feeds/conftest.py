"""Fixtures of the feeds tests: a Spark session on local[1]; builders live in feedkit.py."""
from __future__ import annotations

import pytest

from feedkit import make_run
from testlib import Run

from pinlanding.collections.config import SparkConfig


@pytest.fixture(scope="session")
def spark():
    from pinlanding.collections.engines import spark_session

    session = spark_session(SparkConfig(master="local[1]", shuffle_partitions=2, driver_memory="1g"))
    yield session


@pytest.fixture
def run_ctx(tmp_path, spark) -> Run:
    return make_run(tmp_path)
