"""Sessions of the execution engines every stage shares: Ray (model stages) and Spark (feeds).

Imports are lazy so a stage that needs neither engine never pays for them.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TypeVar

from tqdm import tqdm

from pinlanding.collections.config import RayConfig, SparkConfig

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

T = TypeVar("T")


def torch_device(requested: str = "auto") -> str:
    """Resolve ``auto`` to ``cuda`` when a GPU is visible, else ``cpu``."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Connect to (or start) Ray for the duration of the block; shut it down only if we started it.

    With ``cfg.address`` the driver joins an existing cluster (``host:port`` of the head's GCS, or ``auto``
    on a cluster node); every node must be able to import this pinlanding version (installed in the
    nodes' image, or shipped with ``cfg.runtime_env``), which is checked on each node before any stage
    work starts. Inside the ``with`` block Ray Data keeps block order, so a stage's output order does not
    depend on which node finished first. Task and actor retries on node loss are Ray Data's defaults
    (unlimited for system failures), which no call site may lower.
    """
    import ray

    started = False
    if not ray.is_initialized():
        # the driver's terminal shows the stages' progress, not Ray's start-up notices and deprecation warnings
        kwargs: dict = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False,
                        "logging_level": logging.ERROR}
        if cfg.address:
            kwargs["address"] = cfg.address
        else:
            kwargs.update(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, object_store_memory=cfg.object_store_memory)
        if cfg.runtime_env:
            kwargs["runtime_env"] = cfg.runtime_env
        ray.init(**kwargs)
        started = True
        if cfg.address:
            try:
                check_cluster_nodes()
            except BaseException:
                ray.shutdown()
                raise
    ctx = ray.data.DataContext.get_current()
    # bars on a terminal; in a batch job's log file Ray Data would instead log its whole operator table
    # every few seconds (pages of engine logs): the stages print their own summaries
    ctx.enable_progress_bars = sys.stdout.isatty()
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    previous_order = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        yield
    finally:
        ctx.execution_options.preserve_order = previous_order
        if started:
            ray.shutdown()


def map_parts(fn: Callable[[str], T], names: Sequence[str], ray_cfg: RayConfig | None = None,
              desc: str = "parts") -> list[T]:
    """``[fn(name) for name in names]`` over the parts of a partitioned artifact (collections/parts.py).

    Here, one part at a time; or, with ``ray_cfg.part_tasks``, as Ray tasks (one CPU each) spread over
    the cluster, retried on node loss. ``fn`` reads its inputs from and writes its outputs to the run
    folder, and returns something small (counts, a written part): that is all the driver holds. On Ray
    it must be picklable (a module-level function, or a ``functools.partial`` of one).
    """
    if ray_cfg is None or not ray_cfg.part_tasks:
        return [fn(name) for name in tqdm(names, desc=desc, unit=" part", disable=len(names) < 2)]
    import ray

    with ray_session(ray_cfg):
        task = ray.remote(num_cpus=1, max_retries=-1)(_call)  # -1: retry system failures (lost nodes) forever
        fn_ref = ray.put(fn)
        refs = [task.remote(fn_ref, name) for name in names]
        with tqdm(total=len(refs), desc=desc, unit=" part", disable=len(names) < 2) as bar:
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(done))
        return ray.get(refs)


def _call(fn: Callable[[str], T], name: str) -> T:
    return fn(name)


def check_cluster_nodes(timeout_s: float = 60.0) -> list[str]:
    """Run a zero-CPU probe on every alive node; raise naming the nodes that cannot import this pinlanding.

    Returns the ids of the nodes that answered. A node that dies or does not answer within ``timeout_s`` is
    not judged (node loss is Ray's to handle); one that answers with an error or another version is, since a
    cluster whose workers lack the package would otherwise fail deep inside a stage with an unpickling error.
    """
    import ray
    from ray.exceptions import GetTimeoutError, NodeDiedError, TaskUnschedulableError, WorkerCrashedError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from pinlanding import __version__

    def node_version() -> str:  # nested, so it is shipped by value: the node only needs to import pinlanding
        import pinlanding

        return pinlanding.__version__

    probe = ray.remote(num_cpus=0, max_retries=0)(node_version)
    refs = {n["NodeID"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote() for n in ray.nodes() if n.get("Alive")}
    ready, pending = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    for ref in pending:
        ray.cancel(ref, force=True)
    answered: list[str] = []
    bad: dict[str, str] = {}
    for node_id, ref in refs.items():
        if ref not in ready:
            continue
        try:
            version = ray.get(ref)
        except (GetTimeoutError, NodeDiedError, TaskUnschedulableError, WorkerCrashedError):
            continue
        except Exception as exc:  # noqa: BLE001 - any other failure means the node cannot run stage code
            bad[node_id] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
            continue
        answered.append(node_id)
        if version != __version__:
            bad[node_id] = f"pinlanding {version} (the driver runs {__version__})"
    if bad:
        raise RuntimeError(
            f"{len(bad)} of {len(refs)} Ray nodes cannot run pinlanding {__version__}: {bad}; install the same "
            "version on every node (cluster image) or ship it with ray.runtime_env (py_modules / pip)")
    return answered


def spark_session(cfg: SparkConfig) -> "SparkSession":
    """Get or create the Spark session described by ``cfg`` (UI off, loopback when local).

    A session already running against another master (a local run earlier in the same process) is
    stopped first: ``getOrCreate`` would otherwise silently keep the old master.
    """
    if cfg.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and active.sparkContext.master != cfg.master:
        active.stop()
    builder = (
        SparkSession.builder.master(cfg.master)
        .appName(cfg.app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
    )
    # Python UDF workers (feeds reads object-store Parquet with mapInArrow) must import pinlanding: they run
    # this interpreter unless the config names one (a cluster's, e.g. conf/cluster.yaml), not whatever python3
    # is first on PATH. PySpark reads PYSPARK_PYTHON when the context starts. PYTHONSAFEPATH keeps the
    # worker's working directory (a checkout whose collections/ folder would shadow the stdlib) off sys.path.
    os.environ["PYSPARK_PYTHON"] = str(cfg.conf.get("spark.pyspark.python", os.environ.get("PYSPARK_PYTHON", sys.executable)))
    conf = {"spark.executorEnv.PYTHONSAFEPATH": "1", **cfg.conf}
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
