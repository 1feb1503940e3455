"""Load benchmark of the search team's feed API on a real run, over loopback.

    python benchmarks/bench_api.py [--run runs/dev] [--requests 2000] [--concurrency 16] [--json out.json]

1. **Readiness**: starts ``pinlanding serve`` as its own process, twice, and times process start -> ``/health``
   says ``search: ready``: a **cold** start (empty embedding cache: the vocabulary is embedded) and a
   **warm** one (the vectors come from the cache file the first start wrote). The benchmark's versions
   and cache live in a temporary folder: the run's own are not touched.
2. **Load**: ``--requests`` requests from ``--concurrency`` concurrent clients (one asyncio process, separate
   from the server, each client on its own keep-alive connection) over a mix of routes: ``/search`` with real Fashion12K queries (sampled with
   a fixed seed), ``/topics`` with filters, ``/topics/{slug}``, ``/topics/{slug}/feed``, ``/changes``,
   ``/health``, and repeats with ``If-None-Match`` (304). p50/p95/p99 and errors per route.
3. **Batch**: every Fashion12K query through ``POST /search/batch`` (at most ``serve.max_batch`` per
   request, sent one after another), wall time from the first request to the last answer: once after the
   load (the only query words embedded yet are those of the load's ``/search`` requests that needed one, a
   few dozen) and again (every word cached).

Prints one JSON document (also written to ``--json``); exits non-zero on any error response.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ROOT.parent / "shared" / "datasets" / "search-queries" / "fashion12k_queries.tsv"
MIX = {"search": 0.40, "topics": 0.12, "topic": 0.10, "feed": 0.15, "changes": 0.05, "health": 0.05, "revalidate": 0.13}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, state: Path, log: Path,
                 overrides: list[str] | None = None) -> tuple[subprocess.Popen, float]:
    """Start `pinlanding serve`; return (process, seconds from start until search is ready)."""
    exe = Path(sys.executable).with_name("pinlanding")
    cmd = [str(exe) if exe.exists() else "pinlanding", "serve", "--run", str(run), "--host", "127.0.0.1",
           "--port", str(port), "--set", f"serve.versions_dir={state / 'versions'}"]
    for o in overrides or []:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = t0 + 300
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}); see {log}")
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
            if health["search"] == "ready":
                return proc, time.perf_counter() - t0
            if health["search"] == "failed":
                raise SystemExit(f"search failed to start: {health}")
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server was not ready within 300 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def read_queries() -> list[str]:
    sys.path.insert(0, str(ROOT.parent))
    from pinlanding.collections.queries import read_queries as read

    return read(QUERIES, "English query")[0]


def plan(base: str, n: int, queries: list[str], topics: list[dict], run_id: str, seed: int = 18) -> list[tuple[str, str, dict]]:
    """(route, url, headers) for n requests in the MIX proportions, shuffled with a fixed seed."""
    rng = random.Random(seed)
    etags: dict[str, str] = {}
    keys = [(a["key"], a["value"]) for t in topics for a in t["attributes"]]
    out = []
    routes = [r for r, share in MIX.items() for _ in range(round(share * n))][:n]
    while len(routes) < n:
        routes.append("search")
    rng.shuffle(routes)
    for route in routes:
        t = rng.choice(topics)
        if route == "search":
            url = f"/search?q={quote(rng.choice(queries))}"
        elif route == "topics":
            k, v = rng.choice(keys)
            url = f"/topics?{quote(k)}={quote(v)}&min_size={rng.choice([0, 20, 50])}&limit=20"
        elif route == "topic":
            url = f"/topics/{quote(t['slug'])}"
        elif route == "feed":
            url = f"/topics/{quote(t['slug'])}/feed?offset={rng.choice([0, 20, 40])}&limit=20"
        elif route == "changes":
            url = f"/changes?since={run_id}"
        elif route == "health":
            url = "/health"
        else:  # a client revalidating a feed page it holds
            url = f"/topics/{quote(t['slug'])}/feed?limit=20"
            if url not in etags:
                etags[url] = httpx.get(base + url, timeout=30).headers["etag"]
            out.append((route, url, {"If-None-Match": etags[url]}))
            continue
        out.append((route, url, {}))
    return out


async def _fetch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, url: str,
                 headers: dict) -> tuple[int, float]:
    """One HTTP/1.1 keep-alive GET with a content-length answer (every route in the mix gives one): the status and
    the server's own time (its Server-Timing header, seconds)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1"))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")), 0)
    if length:
        await reader.readexactly(length)
    timing = next((line.split("dur=", 1)[1] for line in lines[1:] if line.lower().startswith("server-timing:")), "0")
    return status, float(timing) / 1e3


async def load(base: str, requests: list[tuple[str, str, dict]], concurrency: int) -> tuple[dict, dict, float]:
    """Closed-loop load: ``concurrency`` clients, each on its own keep-alive connection, sending the next request
    as soon as its answer is read. A minimal HTTP/1.1 client (like wrk), so that the load generator's own CPU,
    on the same cores as the server, inflates the latencies as little as possible."""
    host, port = base.removeprefix("http://").split(":")
    latencies: dict[str, list[float]] = {}
    statuses: dict[str, dict[int, int]] = {}
    queue = list(reversed(requests))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while queue:
                route, url, headers = queue.pop()
                t0 = time.perf_counter()
                status, server = await _fetch(reader, writer, host, url, headers)
                latencies.setdefault(route, []).append(time.perf_counter() - t0)
                latencies.setdefault(f"{route} (server)", []).append(server)
                codes = statuses.setdefault(route, {})
                codes[status] = codes.get(status, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - t0


def pct(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(sorted(xs), n=100, method="inclusive") if len(xs) > 1 else [xs[0]] * 99
    return {"p50_ms": round(q[49] * 1e3, 2), "p95_ms": round(q[94] * 1e3, 2), "p99_ms": round(q[98] * 1e3, 2),
            "max_ms": round(max(xs) * 1e3, 2)}


def batch(base: str, queries: list[str], size: int) -> dict:
    t0 = time.perf_counter()
    answers = []
    server_seconds = 0.0
    with httpx.Client(timeout=600) as http:
        for start in range(0, len(queries), size):
            r = http.post(base + "/search/batch", json={"queries": queries[start:start + size]})
            r.raise_for_status()
            body = r.json()
            server_seconds += body["seconds"]
            answers += body["results"]
    wall = time.perf_counter() - t0
    matches = {m: sum(1 for a in answers if a["match"] == m) for m in ("exact", "partial", "none")}
    return {"queries": len(answers), "requests": -(-len(queries) // size), "seconds": round(wall, 3),
            "server_seconds": round(server_seconds, 3), "answers": matches}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "dev")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=10000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="a serve setting, e.g. serve.embed_wait_ms=0")
    args = ap.parse_args(argv)
    if not (args.run / "feeds" / "feeds.parquet").exists():
        print(f"bench_api: skipped, no published feeds under {args.run} (copy or run one there)")
        return 0
    queries = read_queries()
    state = Path(tempfile.mkdtemp(prefix="bench-api-"))
    log = state / "serve.log"
    report: dict = {"run": str(args.run), "settings": args.overrides, "cpus": os.cpu_count(),
                    "load_average_before": os.getloadavg()}
    try:
        port = free_port()
        proc, cold = start_server(args.run, port, state, log, args.overrides)
        stop(proc)
        proc, warm = start_server(args.run, port, state, log, args.overrides)
        report["ready_seconds"] = {"cold": round(cold, 2), "warm": round(warm, 2)}
        base = f"http://127.0.0.1:{port}"
        try:
            health = httpx.get(base + "/health").json()
            topics = []
            offset = 0
            while True:
                page = httpx.get(base + "/topics", params={"offset": offset, "limit": 100}).json()
                topics += page["items"]
                offset += 100
                if offset >= page["total"]:
                    break
            requests = plan(base, args.requests, queries, topics, health["run_id"])
            latencies, statuses, wall = asyncio.run(load(base, requests, args.concurrency))
            every = [x for r, xs in latencies.items() if not r.endswith("(server)") for x in xs]
            errors = {r: sum(n for code, n in c.items() if code >= 400) for r, c in statuses.items()}
            report["load"] = {"requests": len(every), "concurrency": args.concurrency, "seconds": round(wall, 2),
                              "requests_per_second": round(len(every) / wall, 1), "all": pct(every),
                              "routes": {r: {"requests": len(xs), **pct(xs), "statuses": statuses[r], "errors": errors[r]}
                                         for r, xs in sorted(latencies.items()) if r in statuses},
                              "server_side": {r.removesuffix(" (server)"): pct(xs) for r, xs in sorted(latencies.items())
                                              if r.endswith("(server)")}}
            # after the load: only the words of the load's /search queries that needed one are embedded yet
            report["batch"] = batch(base, queries, args.batch_size)
            report["batch_again"] = batch(base, queries, args.batch_size)  # every word now cached
            report["health_after"] = httpx.get(base + "/health").json()
        finally:
            stop(proc)
        report["load_average_after"] = os.getloadavg()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    bad = sum(r["errors"] for r in report["load"]["routes"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
