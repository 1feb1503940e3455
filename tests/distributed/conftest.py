"""Module-scoped real services on loopback (each stops as soon as its module ends): a Ray head + one worker node,
a Spark standalone master + worker, an S3 server (moto)."""
from __future__ import annotations

import os
from typing import Iterator

import pytest
from loopback_clusters import RayCluster, SparkStandalone
from object_store import S3Server, s3_server

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    """Head (2 logical CPUs) + one worker node (2 logical CPUs), 150 MB object store each; always stopped.

    While it lives, this process is a client of it (its auth token), also for any local Ray started meanwhile.
    """
    cluster = RayCluster(num_cpus_head=2, num_cpus_worker=2)
    try:
        cluster.start()
        with cluster.client_env():
            yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def spark_cluster() -> Iterator[SparkStandalone]:
    """Spark standalone master + one worker (1 core, 1 GiB); always stopped."""
    cluster = SparkStandalone(worker_cores=1, worker_memory="1g")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A local S3 endpoint with fake credentials, exported through the standard AWS_* environment; always stopped."""
    with s3_server() as server:
        yield server
