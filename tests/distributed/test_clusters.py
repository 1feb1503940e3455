"""The cluster fixtures and the engine sessions, with small jobs of our own on real multi-process clusters."""
from __future__ import annotations

import numpy as np
import pytest

from pinlanding.collections.config import RayConfig, SparkConfig, load_config
from pinlanding.collections.engines import check_cluster_nodes, ray_session, spark_session

CLUSTER_YAML = load_config.__globals__["CONF_DIR"] / "cluster.yaml"


def test_cluster_yaml_points_at_clusters() -> None:
    cfg = load_config(CLUSTER_YAML)
    assert cfg.ray.address and not cfg.spark.master.startswith("local")
    assert load_config().ray.address is None  # the default stays local


def _tag_node(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import ray

    batch["node"] = np.array([ray.get_runtime_context().get_node_id()] * len(batch["id"]))
    return batch


@pytest.mark.slow
def test_ray_data_job_spreads_over_both_nodes_in_order(ray_cluster) -> None:
    import ray

    with ray_session(RayConfig(address=ray_cluster.address)):
        assert len(check_cluster_nodes()) == 2
        rows = ray.data.range(64, override_num_blocks=16).map_batches(_tag_node, batch_size=4).take_all()
    assert not ray.is_initialized()  # the session it opened is closed again
    assert [r["id"] for r in rows] == list(range(64))  # block order kept, whichever node finished first
    assert len({r["node"] for r in rows}) == 2, "every block ran on one node: the worker node took no work"


@pytest.mark.slow
def test_node_without_this_pinlanding_is_named_before_any_work(ray_cluster, tmp_path) -> None:
    fake = tmp_path / "pinlanding"
    fake.mkdir()
    (fake / "__init__.py").write_text('__version__ = "0.0.0-stale"\n')
    ray_cluster.add_worker(env={"PYTHONPATH": str(tmp_path)})  # shadows the installed package on that node
    try:
        with pytest.raises(RuntimeError, match=r"1 of 3 Ray nodes cannot run pinlanding .*0\.0\.0-stale"):
            with ray_session(RayConfig(address=ray_cluster.address)):
                pass
    finally:
        ray_cluster.remove_worker(len(ray_cluster.workers) - 1)


@pytest.mark.slow
def test_spark_session_uses_standalone_master_then_switches_back(spark_cluster, tmp_path) -> None:
    import sys

    conf = {"spark.executor.memory": "512m", "spark.pyspark.python": sys.executable}
    spark = spark_session(SparkConfig(master=spark_cluster.url, shuffle_partitions=2, conf=conf))
    try:
        assert spark.sparkContext.master == spark_cluster.url
        path = str(tmp_path / "numbers.parquet")
        spark.range(1000).selectExpr("id % 7 AS k", "id").write.parquet(path)
        got = {r["k"]: r["n"] for r in spark.read.parquet(path).groupBy("k").count().withColumnRenamed("count", "n")
               .collect()}
        executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size()  # driver + executors
        udf_sum = spark.sparkContext.parallelize(range(10), 2).map(lambda x: x * 2).sum()  # Python workers
    finally:
        spark.stop()
    assert got == {k: len(range(k, 1000, 7)) for k in range(7)}
    assert executors >= 2, "no executor registered on the standalone worker"
    assert udf_sum == 90
    local = spark_session(SparkConfig(master="local[1]", shuffle_partitions=1))
    try:
        assert local.sparkContext.master == "local[1]"
    finally:
        local.stop()
