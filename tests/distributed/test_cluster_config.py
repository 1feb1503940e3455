"""conf/cluster.yaml: the configuration that points a run at clusters (no cluster needed)."""
from __future__ import annotations

from pinlanding.collections.config import CONF_DIR, load_config


def test_cluster_yaml_points_at_clusters_and_default_stays_local() -> None:
    cfg = load_config(CONF_DIR / "cluster.yaml")
    assert cfg.ray.address and cfg.spark.master.startswith("spark://")
    assert cfg.extract.actors > 1 and cfg.assign.actors > 1  # model pools sized apart from the CPU pools
    assert cfg.extract.preprocess_tasks > cfg.extract.actors
    assert not cfg.ray.runtime_env  # the nodes are expected to have the package installed
    assert cfg.ray.part_tasks  # per-part steps run on the cluster, not on the driver
    default = load_config()
    assert default.ray.address is None and default.spark.master.startswith("local") and not default.ray.part_tasks
