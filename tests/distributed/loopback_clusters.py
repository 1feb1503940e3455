"""Real Ray and Spark standalone clusters on loopback, started as separate processes for the tests.

Each daemon runs in its own session (process group) so that stopping it, or killing a Ray worker node on
purpose, signals exactly the processes this helper started, by process-group id. Ray gets a unique, short
``--temp-dir`` (its ``ray_current_cluster`` file lives there, so nobody else's ``ray.init()`` can find and
join the test cluster) and explicit ports for every service that otherwise has a fixed default. It uses
token authentication (Ray's default for ``ray start`` once a token exists) with its own token file, which
every client of it, the test process included, must be given (:meth:`RayCluster.client_env`).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

BIN = Path(sys.executable).parent
OBJECT_STORE_BYTES = 150 * 1024 * 1024
WORKER_PORTS = 100  # size of each node's worker port range


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a daemon in its own session, working directory the log's folder (a node never shares the
    driver's working directory, so a relative path leaking from the driver fails as it would on a cluster)."""
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=log.parent,
                                env={**os.environ, **(env or {})}, start_new_session=True)


def _stop_group(proc: subprocess.Popen | None, grace_s: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (one we started), then SIGKILL what is left."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; give its group a moment, then make sure no member survives
        time.sleep(0.5)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break


def _pids_mentioning(marker: str) -> list[int]:
    """Processes whose command line contains ``marker`` (our unique temp dir): daemons that left our group."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


def _processes() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, command line)}`` of every live process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            table[int(entry.name)] = (int(fields[1]), cmdline)
        except (OSError, IndexError, ValueError):
            continue
    return table


def process_tree(root: int) -> dict[int, str]:
    """``{pid: command line}`` of ``root`` and all its descendants. Ray puts each worker process in a session
    of its own, so a node is its ``ray start`` process's tree, not its process group."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found[pid] = table[pid][1]
            todo.extend(children.get(pid, []))
    return found


def _kill_tree(proc: subprocess.Popen | None) -> None:
    """SIGKILL the whole process tree of ``proc`` (one we started), leaves first being irrelevant to SIGKILL."""
    if proc is None:
        return
    _kill(process_tree(proc.pid))
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _wait_for(predicate, timeout_s: float, what: str, log: Path, proc: subprocess.Popen) -> None:
    """Poll ``predicate`` until true; fail with the log's tail on timeout or when ``proc`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; log {log}:\n{_read(log)[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s; log {log}:\n{_read(log)[-3000:]}")


# ------------------------------------------------------------------------------------------------- Ray


@dataclass
class RayCluster:
    """A Ray head and worker nodes on 127.0.0.1, each ``ray start --block`` in its own process group."""

    num_cpus_head: int = 1
    num_cpus_worker: int = 1
    object_store_bytes: int = OBJECT_STORE_BYTES
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rt", dir="/tmp")))
    port: int = 0
    head: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    _taken: set[int] = field(default_factory=set)  # ports handed to this cluster's nodes so far

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token_path(self) -> Path:
        return self.root / "auth_token"

    def env(self) -> dict[str, str]:
        """Environment of every process of this cluster and of its clients."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                "RAY_USAGE_STATS_ENABLED": "0"}

    @contextmanager
    def client_env(self) -> Iterator[None]:
        """Make this process a client of the cluster (its token), restoring the environment afterwards."""
        from ray._raylet import AuthenticationTokenLoader, Config

        saved = {k: os.environ.get(k) for k in self.env()}
        os.environ.update(self.env())
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()

    def _new_port(self) -> int:
        """A free port not yet handed to this cluster: the OS may hand a just-released port out again, and
        Ray refuses to start when two of its components share one."""
        port = free_port()
        while port in self._taken:
            port = free_port()
        self._taken.add(port)
        return port

    def _node_args(self, num_cpus: int, node_manager_port: int) -> list[str]:
        ports = [self._new_port() for _ in range(5)]
        lo = free_port()
        while any(lo <= p <= lo + WORKER_PORTS for p in self._taken) or lo + WORKER_PORTS > 65535:
            lo = free_port()  # Ray refuses a worker port range that contains another component's port
        self._taken |= set(range(lo, lo + WORKER_PORTS + 1))
        return ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--num-gpus=0",
                f"--object-store-memory={self.object_store_bytes}", f"--temp-dir={self.root}",
                f"--node-manager-port={node_manager_port}", f"--object-manager-port={ports[0]}",
                f"--dashboard-agent-listen-port={ports[1]}", f"--dashboard-agent-grpc-port={ports[2]}",
                f"--runtime-env-agent-port={ports[3]}", f"--metrics-export-port={ports[4]}",
                f"--min-worker-port={lo}", f"--max-worker-port={lo + WORKER_PORTS}", "--disable-usage-stats"]

    def start(self, timeout_s: float = 120.0) -> "RayCluster":
        self.port = self._new_port()
        self.token_path.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
        self.token_path.chmod(0o600)
        port, dashboard = self._new_port(), self._new_port()
        cmd = [str(BIN / "ray"), "start", "--head", f"--port={self.port}", "--include-dashboard=false",
               f"--dashboard-port={dashboard}", *self._node_args(self.num_cpus_head, port)]
        # the GCS declares a silent node dead after ~3 s instead of Ray's default ~30 s: tests wait less
        health = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                  "RAY_health_check_failure_threshold": "3"}
        self.head = _spawn(cmd, self.root / "head.log", {**self.env(), **health})
        _wait_for(lambda: port in self.alive_node_ports(), timeout_s, "Ray head", self.root / "head.log", self.head)
        self.add_worker(timeout_s)
        return self

    def add_worker(self, timeout_s: float = 120.0, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start one more worker node (with extra environment ``env``) and wait until the cluster counts it."""
        port = self._new_port()
        log = self.root / f"worker-{port}.log"
        cmd = [str(BIN / "ray"), "start", f"--address={self.address}", *self._node_args(self.num_cpus_worker, port)]
        proc = _spawn(cmd, log, {**self.env(), **(env or {})})
        self.workers.append(proc)
        _wait_for(lambda: port in self.alive_node_ports(), timeout_s, "Ray worker node", log, proc)
        return proc

    def alive_node_ports(self) -> set[int]:
        """Node-manager ports of the nodes the GCS counts as alive (asked from a subprocess, so that this
        process stays unconnected; a node killed a moment ago may still be counted)."""
        code = ("import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False);"
                "print(*[n['NodeManagerPort'] for n in ray.nodes() if n['Alive']])")
        try:
            out = subprocess.run([sys.executable, "-c", code, self.address], capture_output=True, text=True,
                                 timeout=60, env={**os.environ, **self.env()})
        except subprocess.TimeoutExpired:
            return set()
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            return set()
        return {int(p) for p in lines[-1].split() if p.isdigit()}

    def node_processes(self, index: int = 0) -> dict[int, str]:
        """``{pid: command line}`` of worker node ``index``: its raylet, agents and Ray worker processes."""
        return process_tree(self.workers[index].pid)

    def kill_worker(self, index: int = 0) -> None:
        """SIGKILL every process of a worker node at once (raylet, agents, actors, tasks): a node crash."""
        _kill_tree(self.workers[index])

    def remove_worker(self, index: int) -> None:
        """Kill worker node ``index`` and forget it."""
        self.kill_worker(index)
        del self.workers[index]

    def stop(self) -> None:
        for proc in [*self.workers, self.head]:
            tree = process_tree(proc.pid) if proc is not None else {}
            _stop_group(proc)
            _kill(tree)  # Ray workers live in sessions of their own, outside the node's group
        _kill(_pids_mentioning(str(self.root)))
        shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- Spark


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass
class SparkStandalone:
    """A Spark standalone master and one worker on 127.0.0.1 (pyspark's bundled ``spark-class``)."""

    worker_cores: int = 1
    worker_memory: str = "1g"
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sp", dir="/tmp")))
    port: int = 0
    master: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {"SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(self.root),
                "SPARK_WORKER_DIR": str(self.root / "work"), "SPARK_DAEMON_MEMORY": "256m",
                "PYSPARK_PYTHON": sys.executable}

    def start(self, timeout_s: float = 120.0) -> "SparkStandalone":
        self.port = free_port()
        spark_class = str(spark_home() / "bin" / "spark-class")
        self.master = _spawn([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                              "--port", str(self.port), "--webui-port", str(free_port())],
                             self.root / "master.log", self._env())
        _wait_for(lambda: "Starting Spark master" in _read(self.root / "master.log")
                  and _listening(self.port), timeout_s, "Spark master", self.root / "master.log",
                  self.master)
        self.worker = _spawn([spark_class, "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                              "--port", str(free_port()), "--webui-port", str(free_port()),
                              "--cores", str(self.worker_cores), "--memory", self.worker_memory,
                              "--work-dir", str(self.root / "work")],
                             self.root / "worker.log", self._env())
        _wait_for(lambda: "Successfully registered with master" in _read(self.root / "worker.log"), timeout_s,
                  "Spark worker", self.root / "worker.log", self.worker)
        return self

    def stop(self) -> None:
        _stop_group(self.worker)
        _stop_group(self.master)
        _kill(_pids_mentioning(str(self.root)))
        shutil.rmtree(self.root, ignore_errors=True)


def _kill(pids) -> None:
    """SIGKILL every process id given; ones already gone are fine."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ------------------------------------------------------------------------------------------- catalogue
