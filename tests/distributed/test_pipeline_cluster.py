"""The real pipeline on a slice of the real catalogue: local engines vs the loopback Ray and Spark clusters.

Both runs use the same configuration except ``ray.address`` / ``spark.master``; the cluster run must
reproduce every deterministic artifact of the local run. A third run loses its Ray worker node (SIGKILL
of every process of the node at once) in the middle of the first Ray stage, while the node hosts one of the
stage's model actors and the stage has delivered part of its batches; the stage must still finish, on
the head, with the same artifacts as the local run: nothing lost, nothing duplicated. Stages not present in this installation are skipped and
named in the test output.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import require_myntra

from pinlanding.collections.config import PipelineConfig, load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import Pipeline, get_stage

from loopback_clusters import RayCluster, myntra_slice  # noqa: I001 - beside this file
from run_compare import ARTIFACTS, differences, duplicated

pytestmark = pytest.mark.slow

# The stages that use an engine, and those they need. site/report use neither Ray nor Spark.
STAGES = ("ingest", "extract", "vocab", "topics", "train", "assign", "feeds")
RAY_STAGES = {"extract": "EmbeddedExtractor", "assign": "EmbedAndScore"}  # stage -> its model actor class
SLICE = 300

# Small-catalogue settings shared by every run (the slice is 1% of the dev catalogue): several batches per
# Ray stage so that work spreads over both nodes, and topic/feed floors that 300 products can reach.
OVERRIDES = [
    "extract.batch_size=25", "extract.actors=2",
    "assign.batch_size=32", "assign.decode_batch_size=32", "assign.actors=2",
    "vocab.topics.min_support=5", "feeds.min_feed_size=3",
    "spark.shuffle_partitions=2", "ray.object_store_memory=200000000",
    f"spark.conf={{spark.executor.memory: 512m, spark.pyspark.python: {sys.executable}}}",
]


def available() -> tuple[list[str], list[str]]:
    present = [s for s in STAGES if get_stage(s).available()]
    return present, [s for s in STAGES if s not in present]


def config(ray_address: str | None, spark_master: str) -> PipelineConfig:
    where = [f"ray.address={ray_address}"] if ray_address else ["ray.num_cpus=4"]
    return load_config(overrides=[*OVERRIDES, *where, f"spark.master={spark_master}"])


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return myntra_slice(require_myntra(), tmp_path_factory.mktemp("slice") / "myntra", SLICE)


@pytest.fixture(scope="module")
def local_run(catalog, tmp_path_factory, ray_cluster) -> Path:
    """The reference: local Ray (4 logical CPUs) and Spark local[1]. (``ray_cluster`` only lends its auth
    environment, so that this local Ray uses the same token and writes nothing under ~/.ray.)"""
    present, absent = available()
    print(f"stages run: {present}; absent from this installation: {absent}")
    out = tmp_path_factory.mktemp("local")
    Pipeline(config(None, "local[1]"), RunLayout(out), catalog=catalog).run(present)
    return out


def test_cluster_run_reproduces_local_run(catalog, local_run, ray_cluster, spark_cluster, tmp_path) -> None:
    present, absent = available()
    manifest = Pipeline(config(ray_cluster.address, spark_cluster.url), RunLayout(tmp_path), catalog=catalog).run(present)
    assert set(manifest["stages"]) == set(present)
    assert manifest["config"]["ray"]["address"] == ray_cluster.address
    assert manifest["config"]["spark"]["master"] == spark_cluster.url
    compared = [rel for s in present for rel in ARTIFACTS.get(s, ()) if (local_run / rel).exists()]
    assert compared, f"no engine stage ran (absent: {absent})"
    assert differences(local_run, tmp_path, present) == {}
    if "feeds" in present:
        assert (tmp_path / "feeds" / "feeds.jsonl").read_bytes() == (local_run / "feeds" / "feeds.jsonl").read_bytes()
        assert (tmp_path / "feeds" / "feeds.jsonl").stat().st_size > 0, "no feed at all: the comparison proves little"


class NodeKiller(threading.Thread):
    """Kills the cluster's worker node once it hosts ``actor_class`` and, when ``progress`` is given, the
    stage has delivered at least one batch; records what the stage had finished at that moment."""

    def __init__(self, cluster: RayCluster, actor_class: str, progress, finished, timeout_s: float = 300) -> None:
        super().__init__(daemon=True)
        self.cluster, self.actor_class, self.progress, self.finished = cluster, actor_class, progress, finished
        self.timeout_s = timeout_s
        self.stop_event = threading.Event()
        self.killed_at: float | None = None
        self.state_at_kill: dict = {}

    def actor_on_worker(self) -> bool:
        return any(self.actor_class in title for title in self.cluster.node_processes(0).values())

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            if self.actor_on_worker() and self.progress() >= 1:
                self.state_at_kill = {"stage_finished": self.finished(), "progress": self.progress()}
                self.cluster.kill_worker(0)
                self.killed_at = time.monotonic()
                return
            time.sleep(0.2)


def test_worker_node_killed_mid_stage_loses_and_duplicates_nothing(catalog, local_run, ray_cluster, spark_cluster,
                                                                   tmp_path) -> None:
    present, _ = available()
    target = next((s for s in RAY_STAGES if s in present), None)
    if target is None:
        pytest.skip(f"no Ray stage in this installation (looked for {list(RAY_STAGES)})")
    layout = RunLayout(tmp_path)
    pipeline = Pipeline(config(ray_cluster.address, spark_cluster.url), layout, catalog=catalog)
    before = present[: present.index(target)]
    pipeline.run(before)

    cache = tmp_path / "attributes" / "cache"
    progress = (lambda: len(list(cache.rglob("part-*.parquet")))) if target == "extract" else (lambda: 1)
    killer = NodeKiller(ray_cluster, RAY_STAGES[target], progress, lambda: target in pipeline.manifest["stages"])
    killer.start()
    started = time.monotonic()
    try:
        pipeline.run([target])
    finally:
        killer.stop_event.set()
        killer.join()
    finished = time.monotonic()
    try:
        assert killer.killed_at is not None, f"the worker node never hosted a {RAY_STAGES[target]} actor with work done"
        assert killer.state_at_kill["stage_finished"] is False
        print(f"{target}: worker node killed {killer.killed_at - started:.1f}s into the stage "
              f"({killer.state_at_kill}); stage finished {finished - killer.killed_at:.1f}s later on the head")
        assert differences(local_run, tmp_path, [target]) == {}  # later stages only read these artifacts
        if target == "extract":
            assert duplicated(layout.attributes, ("product_id", "key", "value", "source")) == \
                duplicated(local_run / "attributes" / "attributes.parquet", ("product_id", "key", "value", "source"))
    finally:
        ray_cluster.add_worker()  # leave a two-node cluster for whatever runs next
