"""Pipeline stages one after another, each timed with its peak memory: for scale runs on one machine.

    python benchmarks/bench_stages.py --out RUN --catalog INPUT --log STAGES.jsonl [--config FILE] \
        [--set key=value ...] ingest extract vocab train assign topics

Each stage runs as its own ``pinlanding stage NAME`` process (so a stage's Ray session, GPU memory and
threads end with it), started by this script, which samples once a second until it exits:

- ``system_used_gib``: the machine's memory in use (MemTotal - MemAvailable, shared memory and Ray's object
  store included), peak minus the value just before the stage started;
- ``tree_rss_gib``: the summed resident memory of the stage's process and all its descendants (Ray's
  raylet, workers and actors included); shared pages are counted once per process, so an upper bound;
- ``max_process_rss_gib``: the largest single process's peak (``getrusage`` of waited-for children);
- ``gpu_used_gib``: the GPU's memory in use, peak (NVML; absent without a GPU).

One JSON line per stage goes to ``--log`` as soon as the stage ends (wall seconds of the process, the
manifest's own stage seconds, its counts), so a run cut short still records the stages it finished. Stops at
the first stage that fails.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

GIB = 1024 ** 3
CLI = "import sys; from pinlanding.collections.cli import main; sys.argv[0] = 'pinlanding'; main()"


def _system_used() -> int:
    vm = psutil.virtual_memory()
    return vm.total - vm.available


def _gpu_reader():
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used
    except Exception:  # no GPU, no NVML
        return None


class Sampler(threading.Thread):
    """Peak memory of a process tree, the machine and the GPU, sampled every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.proc, self.every, self.stop = psutil.Process(pid), every, threading.Event()
        self.gpu = _gpu_reader()
        self.base_system = _system_used()
        self.base_gpu = self.gpu() if self.gpu else 0
        self.peak = {"system": self.base_system, "tree": 0, "gpu": self.base_gpu, "processes": 0}

    def sample(self) -> None:
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        rss = 0
        for p in procs:
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak["tree"] = max(self.peak["tree"], rss)
        self.peak["processes"] = max(self.peak["processes"], len(procs))
        self.peak["system"] = max(self.peak["system"], _system_used())
        if self.gpu:
            self.peak["gpu"] = max(self.peak["gpu"], self.gpu())

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.sample()

    def result(self) -> dict:
        return {"system_used_gib": round((self.peak["system"] - self.base_system) / GIB, 2),
                "system_used_peak_gib": round(self.peak["system"] / GIB, 2),
                "tree_rss_gib": round(self.peak["tree"] / GIB, 2),
                "processes_peak": self.peak["processes"],
                **({"gpu_used_gib": round(self.peak["gpu"] / GIB, 2),
                    "gpu_used_before_gib": round(self.base_gpu / GIB, 2)} if self.gpu else {})}


def run_stage(name: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-c", CLI, "stage", name, "--out", str(args.out)]
    if name == "ingest":
        cmd += ["--catalog", str(args.catalog)]
    if args.config:
        cmd += ["--config", str(args.config)]
    for kv in args.set or []:
        cmd += ["--set", kv]
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    sampler = Sampler(proc.pid, args.every)
    sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    entry = {"stage": name, "rc": rc, "started_utc": started, "wall_s": round(wall, 1), **sampler.result(),
             # the largest single process waited for so far (this script's children and their reaped children)
             "max_process_rss_gib_so_far": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2, 2),
             "command": " ".join(cmd[3:])}
    try:
        stage = json.loads((args.out / "manifest.json").read_text())["stages"].get(name, {})
        entry["manifest_seconds"] = stage.get("seconds")
        entry["counts"] = stage.get("counts")
    except (OSError, ValueError):
        pass
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stages", nargs="+")
    ap.add_argument("--out", type=Path, required=True, help="the run folder")
    ap.add_argument("--catalog", type=Path, help="the input catalogue (for ingest)")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--set", action="append")
    ap.add_argument("--log", type=Path, required=True, help="JSON lines, one per stage")
    ap.add_argument("--every", type=float, default=1.0, help="seconds between memory samples")
    args = ap.parse_args()
    for name in args.stages:
        entry = run_stage(name, args)
        with args.log.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        print(json.dumps(entry), flush=True)
        if entry["rc"] != 0:
            sys.exit(entry["rc"])


if __name__ == "__main__":
    main()
