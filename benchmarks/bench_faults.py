"""Kill the run in each of the nine stages, rerun, and compare every artifact with an uninterrupted run.

On a slice of the real Myntra catalogue (default 1,000 products): one uninterrupted reference run, then one
run folder driven through a chain of kills: the first invocation is killed (SIGKILL to its whole process
group: driver, Ray workers, Spark JVM) partway into ingest, the next one reruns ingest and is killed partway
into extract, and so on through report; a last invocation finishes. Every file of every stage's output
folder is then compared with the reference: Parquet by rows (a cache folder, whose part names are unique per
write, by the rows of all its parts), JSON and safetensors metadata without timing fields (seconds, dates),
tensors exactly, the report without its "Built in N s", everything else byte for byte. Prints one line per
stage: killed mid-stage, identical yes/no, files compared.

Usage: python benchmarks/bench_faults.py [--products 1000] [--work DIR]   (several full runs: tens of minutes)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from standins import write_myntra_slice

from pinlanding.collections.pipeline import STAGES
from pinlanding.encoders.checkpoint import read_tensors

MYNTRA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "myntra"
CLI = Path(sys.executable).parent / "pinlanding"
_TIMING = re.compile(r"seconds|_at$|^at$|elapsed|duration|time|_s$", re.I)
_BUILT_IN = re.compile(rb"Built in [0-9.]+ s")  # the report's own build time


def run(catalog: Path, out: Path, log: Path, kill_in: str | None = None, after_s: float = 0.0) -> tuple[int, bool]:
    """One ``pinlanding run``; with ``kill_in``, SIGKILL its process group ``after_s`` seconds after that
    stage starts. Returns (exit status, whether the kill was sent)."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    with log.open("ab") as sink:
        proc = subprocess.Popen([str(CLI), "run", "--catalog", str(catalog), "--out", str(out)], env=env,
                                stdout=sink, stderr=subprocess.PIPE, start_new_session=True)
        started = threading.Event()

        def watch() -> None:  # the stage banners come on stderr: "> extract: ..."
            assert proc.stderr is not None
            for line in iter(proc.stderr.readline, b""):
                sink.write(line)
                if kill_in and line.lstrip().startswith(f"> {kill_in}:".encode()):
                    started.set()

        reader = threading.Thread(target=watch, daemon=True)
        reader.start()
        killed = False
        if kill_in:
            while proc.poll() is None and not started.wait(0.2):
                pass
            if started.is_set():
                time.sleep(after_s)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = True
        status = proc.wait()
        reader.join(timeout=30)
    return status, killed


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if not _TIMING.search(str(k))}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def same_file(a: Path, b: Path) -> bool:
    if a.suffix == ".parquet":
        return pq.read_table(a).to_pylist() == pq.read_table(b).to_pylist()
    if a.suffix == ".json":
        return _normal(json.loads(a.read_text())) == _normal(json.loads(b.read_text()))
    if a.suffix == ".safetensors":
        (ta, ma), (tb, mb) = read_tensors(a), read_tensors(b)
        return _normal(ma) == _normal(mb) and ta.keys() == tb.keys() and all(ta[k].equal(tb[k]) for k in ta)
    if a.suffix == ".html":
        return _BUILT_IN.sub(b"", a.read_bytes()) == _BUILT_IN.sub(b"", b.read_bytes())
    return a.read_bytes() == b.read_bytes()


def _rows(folder: Path) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for p in sorted(folder.glob("*.parquet"))
                  for r in pq.read_table(p).to_pylist())


def compare(ref: Path, other: Path, folder: str) -> tuple[bool, int, list[str]]:
    """(identical, files compared, differing or missing files) of one output folder."""
    def files(root: Path) -> set[str]:
        base = root / folder
        return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(base).parts)} if base.exists() else set()

    names_ref, names_other = files(ref), files(other)
    differ = []
    for name in sorted(names_ref ^ names_other):  # a cache folder: the same rows under other part names
        parent = str(Path(name).parent)
        if "cache" in Path(name).parts and _rows(ref / folder / parent) == _rows(other / folder / parent):
            continue
        differ.append(name)
    for name in sorted(names_ref & names_other):
        if not same_file(ref / folder / name, other / folder / name):
            differ.append(name)
    return not differ, len(names_ref), differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=None, help="folder for the slice and the runs (default: a temp folder)")
    parser.add_argument("--fraction", type=float, default=0.4, help="kill this far into each stage (of its reference time)")
    parser.add_argument("--compare-only", action="store_true", help="only compare the runs already in --work")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="pl-faults-"))
    catalog = write_myntra_slice(MYNTRA.resolve(), work / "slice", args.products) \
        if not (work / "slice").exists() else work / "slice"
    ref, chained = work / "reference", work / "killed"
    t0 = time.perf_counter()
    if not (ref / "report").exists():
        status, _ = run(catalog, ref, work / "reference.log")
        if status:
            sys.exit(f"the reference run failed ({status}); see {work / 'reference.log'}")
    print(f"reference run: {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = {n: e["seconds"] for n, e in json.loads((ref / "manifest.json").read_text())["stages"].items()}

    killed: dict[str, bool] = {}
    for stage in STAGES if not args.compare_only else ():
        status, sent = run(catalog, chained, work / "killed.log", stage.name, max(0.2, args.fraction * seconds[stage.name]))
        done = json.loads((chained / "manifest.json").read_text())["stages"] if (chained / "manifest.json").exists() else {}
        killed[stage.name] = sent and stage.name not in done
        print(f"  killed in {stage.name}: {'yes' if killed[stage.name] else 'no (finished first)'} (exit {status})",
              flush=True)
    status, _ = run(catalog, chained, work / "killed.log") if not args.compare_only else (0, False)
    if status:
        sys.exit(f"the final rerun failed ({status}); see {work / 'killed.log'}")

    print(f"\n{'stage':<8} {'killed mid-stage':<17} {'identical':<9} files  differing")
    for stage in STAGES:
        results = [compare(ref, chained, folder) for folder in stage.outputs]
        same = all(r[0] for r in results)
        differ = [d for r in results for d in r[2]]
        mid = {True: "yes", False: "no"}.get(killed.get(stage.name), "(not rerun)")
        print(f"{stage.name:<8} {mid:<17} {'yes' if same else 'no':<9} "
              f"{sum(r[1] for r in results):>5}  {', '.join(differ[:4]) or '-'}")
    print(f"\n{args.products} products; work folder {work}; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
