"""Real Ray and Spark clusters on loopback: the engine sessions with small jobs of our own, then the real
pipeline on a slice of the real catalogue, local engines vs the clusters.

Both pipeline runs use the same configuration except ``ray.address`` / ``spark.master``; the cluster run
must reproduce every deterministic artifact of the local run. A third run loses its Ray worker node
(SIGKILL of every process of the node at once) in the middle of the first Ray stage, while the node hosts
one of the stage's model actors and the stage has delivered part of its batches; the stage must still
finish, on the head, with the same artifacts as the local run: nothing lost, nothing duplicated. Every
stage runs and every artifact is compared. The tests run in file order; the
clusters are module-scoped, so they stop when this module ends.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from standins import write_myntra_slice
from testlib import require_myntra

from pinlanding.collections.config import PipelineConfig, RayConfig, SparkConfig, load_config
from pinlanding.collections.engines import check_cluster_nodes, ray_session, spark_session
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import Pipeline

from loopback_clusters import RayCluster  # noqa: I001 - beside this file
from object_store import stop_active_spark
from run_compare import differences, duplicated

pytestmark = pytest.mark.slow

# The stages that use an engine, and those they need. site/report use neither Ray nor Spark.
STAGES = ("ingest", "extract", "vocab", "train", "assign", "topics", "feeds")
RAY_STAGES = {"extract": "EmbeddedExtractor", "assign": "EmbedAndScore"}  # stage -> its model actor class
SLICE = 300

# Small-catalogue settings shared by every run (the slice is 1% of the dev catalogue): several batches per
# Ray stage so that work spreads over both nodes, and topic/feed floors that 300 products can reach.
OVERRIDES = [
    "catalog.part_rows=100",  # three parts: per-part steps and co-partitioned joins are exercised
    "extract.batch_size=25", "extract.actors=2",
    "assign.batch_size=32", "assign.decode_batch_size=32", "assign.actors=2",
    "topics.min_support=5", "feeds.min_feed_size=3",
    "spark.shuffle_partitions=2", "ray.object_store_memory=200000000",
    f"spark.conf={{spark.executor.memory: 512m, spark.pyspark.python: {sys.executable}}}",
]


def test_ray_data_job_spreads_over_both_nodes_in_order(ray_cluster) -> None:
    import ray

    def tag_node(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # nested: shipped to workers by value
        batch["node"] = np.array([ray.get_runtime_context().get_node_id()] * len(batch["id"]))
        return batch

    with ray_session(RayConfig(address=ray_cluster.address)):
        assert len(check_cluster_nodes()) == 2
        rows = ray.data.range(64, override_num_blocks=16).map_batches(tag_node, batch_size=4).take_all()
    assert not ray.is_initialized()  # the session it opened is closed again
    assert [r["id"] for r in rows] == list(range(64))  # block order kept, whichever node finished first
    assert len({r["node"] for r in rows}) == 2, "every block ran on one node: the worker node took no work"


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


def config(ray_address: str | None, spark_master: str) -> PipelineConfig:
    # on the cluster the per-part steps (vocab, topics, train, report...) run as Ray tasks too
    where = [f"ray.address={ray_address}", "ray.part_tasks=true"] if ray_address else ["ray.num_cpus=4"]
    return load_config(overrides=[*OVERRIDES, *where, f"spark.master={spark_master}"])


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return write_myntra_slice(require_myntra(), tmp_path_factory.mktemp("slice") / "myntra", SLICE)


@pytest.fixture(scope="module")
def local_run(catalog, tmp_path_factory, ray_cluster) -> Path:
    """The reference: local Ray (4 logical CPUs) and Spark local[1]. (``ray_cluster`` only lends its auth
    environment, so that this local Ray uses the same token and writes nothing under ~/.ray.)"""
    out = tmp_path_factory.mktemp("local")
    Pipeline(config(None, "local[1]"), RunLayout(out), catalog=catalog).run(list(STAGES))
    return out


def test_cluster_run_reproduces_local_run(catalog, local_run, ray_cluster, spark_cluster, tmp_path,
                                          monkeypatch) -> None:
    present = list(STAGES)
    monkeypatch.chdir(tmp_path.parent)  # a relative run folder, as `pinlanding run --out runs/x` gives
    layout = RunLayout(Path(tmp_path.name))
    manifest = Pipeline(config(ray_cluster.address, spark_cluster.url), layout, catalog=catalog).run(present)
    assert set(manifest["stages"]) == set(present)
    assert manifest["config"]["ray"]["address"] == ray_cluster.address
    assert manifest["config"]["spark"]["master"] == spark_cluster.url
    assert differences(local_run, tmp_path, present) == {}
    assert (tmp_path / "feeds" / "feeds.jsonl").read_bytes() == (local_run / "feeds" / "feeds.jsonl").read_bytes()
    assert (tmp_path / "feeds" / "feeds.jsonl").stat().st_size > 0, "no feed at all: the comparison proves little"


def s3_config(s3) -> PipelineConfig:
    """The local run's configuration; Spark's Python workers also get the S3 endpoint and credentials (in a
    new Spark session: the local run's would keep its executor environment)."""
    stop_active_spark()
    cfg = config(None, "local[1]")
    cfg.spark.conf.update(s3.spark_conf())
    return cfg


@pytest.fixture(scope="module")
def s3_run(s3) -> str:
    """One run folder on the module's S3 server, shared by the object-storage tests (in file order)."""
    return s3.bucket() + "/runs/slice"


def test_run_folder_on_s3_resumes_after_a_crash(catalog, local_run, s3, s3_run, monkeypatch) -> None:
    """A crash in the middle of ``vocab`` (its tables uploaded, its version file not) on an ``s3://`` run folder:
    the rerun reuses ``extract``, redoes ``vocab``, and the artifacts equal the local run's (the next test goes on
    from there)."""
    from upath import UPath

    import pinlanding.vocab.curate as curate

    present = ["ingest", "extract", "vocab"]

    def crash(*args, **kwargs):
        raise RuntimeError("driver killed mid-stage")

    monkeypatch.setattr(curate, "write_version", crash)
    with pytest.raises(RuntimeError, match="killed mid-stage"):
        Pipeline(s3_config(s3), RunLayout(s3_run), catalog=catalog).run(present)
    layout = RunLayout(s3_run)
    assert layout.vocabulary.exists(), "the crash came before vocab wrote anything: it proves little"
    before = json.loads(layout.manifest.read_text())["stages"]
    assert "vocab" not in before and "extract" in before
    monkeypatch.undo()
    manifest = Pipeline(s3_config(s3), layout, catalog=catalog).run(present)
    assert manifest["stages"]["extract"]["finished_at"] == before["extract"]["finished_at"]  # reused
    assert "vocab" in manifest["stages"]
    assert differences(local_run, layout.root, present) == {}
    fs = UPath(s3_run).fs
    fs.invalidate_cache()
    assert not [k for k in fs.find(UPath(s3_run).path) if k.endswith(".tmp")]


def test_run_folder_on_s3_reproduces_local_run(catalog, local_run, s3, s3_run) -> None:
    """The remaining stages continue on the same bucket (earlier ones reused); every artifact equals the local run's."""
    present = list(STAGES)
    layout = RunLayout(s3_run)
    manifest = Pipeline(s3_config(s3), layout, catalog=catalog).run(present)
    assert set(manifest["stages"]) == set(present)
    assert differences(local_run, layout.root, present) == {}
    feeds = layout.feeds_jsonl.read_bytes()
    assert feeds == (local_run / "feeds" / "feeds.jsonl").read_bytes() and feeds, "no feed: proves little"


class NodeKiller(threading.Thread):
    """Kills the cluster's worker node once it hosts ``actor_class`` and ``1 <= progress() < total`` (some of
    the stage's batches delivered, not all); records the progress and whether the stage had finished then."""

    def __init__(self, cluster: RayCluster, actor_class: str, progress, total: int, finished,
                 timeout_s: float = 300) -> None:
        super().__init__(daemon=True)
        self.cluster, self.actor_class, self.progress, self.total = cluster, actor_class, progress, total
        self.finished, self.timeout_s = finished, timeout_s
        self.stop_event = threading.Event()
        self.killed_at: float | None = None
        self.state_at_kill: dict = {}

    def actor_on_worker(self) -> bool:
        return any(self.actor_class in title for title in self.cluster.node_processes(0).values())

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self.actor_on_worker():  # scanning /proc is slow: find the actor first ...
            if self.stop_event.is_set() or time.monotonic() > deadline:
                return
            time.sleep(0.1)
        while not self.stop_event.is_set() and time.monotonic() < deadline:  # ... then watch progress closely
            done = self.progress()
            if 1 <= done < self.total:
                self.cluster.kill_worker(0)
                self.killed_at = time.monotonic()
                self.state_at_kill = {"stage_finished": self.finished(), "batches_done": done, "batches": self.total}
                return
            time.sleep(0.01)


def test_worker_node_killed_mid_stage_loses_and_duplicates_nothing(catalog, local_run, ray_cluster, spark_cluster,
                                                                   tmp_path, monkeypatch) -> None:
    import ray

    present = list(STAGES)
    target = "extract"
    layout = RunLayout(tmp_path)
    pipeline = Pipeline(config(ray_cluster.address, spark_cluster.url), layout, catalog=catalog)
    before = present[: present.index(target)]
    pipeline.run(before)

    cfg = pipeline.cfg
    if target == "extract":  # one cache part file per delivered batch
        cache = tmp_path / "attributes" / "cache"
        progress, total = (lambda: len(list(cache.rglob("part-*.parquet")))), -(-SLICE // cfg.extract.batch_size)
    else:  # no per-batch trace: only "the node hosts a model actor" is checked
        progress, total = (lambda: 1), 2
    killer = NodeKiller(ray_cluster, RAY_STAGES[target], progress, total,
                        lambda: target in pipeline.manifest["stages"])
    # start dispatching only once the whole model pool is up, so that the worker node's actor gets batches
    monkeypatch.setattr(ray.data.DataContext.get_current(), "wait_for_min_actors_s", 300)
    killer.start()
    started = time.monotonic()
    try:
        pipeline.run([target])
    finally:
        killer.stop_event.set()
        killer.join()
    finished = time.monotonic()
    # the cluster keeps one node from here on: this test runs last in the module
    assert killer.killed_at is not None, \
        f"the worker node never hosted a {RAY_STAGES[target]} actor while the stage had batches left"
    assert killer.state_at_kill["stage_finished"] is False
    print(f"{target}: worker node killed {killer.killed_at - started:.1f}s into the stage "
          f"({killer.state_at_kill}); stage finished {finished - killer.killed_at:.1f}s later on the head")
    assert differences(local_run, tmp_path, [target]) == {}  # later stages only read these artifacts
    if target == "extract":
        assert duplicated(layout.attributes, ("product_id", "key", "value", "source")) == \
            duplicated(local_run / "attributes" / "attributes.parquet", ("product_id", "key", "value", "source"))
