"""Visual search (issue 22) on a finished run: quality judged by the dev labels, photo-query latency, index scale.

    python benchmarks/bench_visual.py --run runs/dev [--labels ../shared/datasets/myntra] [--queries 2000]
        [--photos 300] [--requests 300] [--concurrency 100] [--generated 1000000] [--json out.json]

1. **Quality** (``--queries`` held-out products, the encoder's own split: ``encoder.val_fraction`` of the
   500-id blocks, ``run.seed``): the share of each one's 10 most similar products (``GET /products/{id}/similar``'s
   search, its own variants left out) with the same ``articleType`` (target >= 0.9) and the same
   ``articleType`` and ``baseColour`` (target >= 0.7), for exact search and for Hamming + re-rank on the
   ``numpy`` and ``faiss`` backends (difference to exact: target <= 0.02), and their top-10 overlap with exact.
   The same for ``--photos`` held-out products queried by their photo alone (the product tower, no text), as
   ``POST /search/image`` embeds an upload (where the run has its trained encoder). Labels are read here only (``evaluation.labels.read_fields``).
2. **Latency**: ``pinlanding serve`` on the run (its own process), held-out products' photos posted to
   ``/search/image``: one at a time (``--requests`` / 3 requests), then ``--requests`` with ``--concurrency``
   in flight. p50/p95/p99 and throughput. A run without its trained encoder is served with a stand-in of the
   same architecture (:func:`stand_in_run`): the figures are then latency only.
3. **Scale**: ``--generated`` products with generated embeddings (clustered, the run's dimension) written as
   catalogue and embedding parts of 100k, then the index built (time, peak memory above the start), loaded
   (memory held, bytes on disk) and searched (100 queries, one query), all per million products.

Prints one JSON document (also written to ``--json``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import free_port, start_server  # noqa: E402  (the same server start as the feed API benchmark)

from pinlanding.collections.config import load_config  # noqa: E402
from pinlanding.collections.layout import RunLayout  # noqa: E402
from pinlanding.collections.parts import write_parts  # noqa: E402
from pinlanding.collections.schemas import EMBEDDINGS, PRODUCTS  # noqa: E402
from pinlanding.encoders.data import heldout_mask  # noqa: E402
from pinlanding.encoders.visual import VisualIndex, build_visual_index, decode_upload, embed_photo  # noqa: E402
from pinlanding.evaluation.labels import read_fields  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT.parent / "shared" / "datasets" / "myntra"
K = 10


def rss() -> int:
    """Resident memory of this process, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Peak resident memory while the block runs, sampled every 10 ms (Arrow's buffers included)."""

    def __enter__(self) -> "PeakRss":
        self.start = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def heldout_queries(layout: RunLayout, ids: list[str], n: int) -> list[str]:
    cfg = load_config(layout.root / "config.yaml") if (layout.root / "config.yaml").exists() else load_config()
    held = np.asarray(ids, dtype=object)[heldout_mask(ids, cfg.encoder.val_fraction, cfg.encoder.split_block,
                                                      cfg.run.seed)]
    rng = np.random.default_rng(0)
    return sorted(rng.choice(held, min(n, len(held)), replace=False).tolist())


def judge(queries: list[str], hits: list[list[tuple[str, float]]], labels: dict[str, dict[str, str]]) -> dict:
    """Shares of the hits with the query's articleType, and articleType + baseColour (labelled pairs only)."""
    same_type, same_both, n = 0, 0, 0
    for q, found in zip(queries, hits):
        mine = labels.get(q, {})
        for pid, _ in found:
            theirs = labels.get(pid, {})
            if "articleType" not in mine or "articleType" not in theirs:
                continue
            n += 1
            same_type += mine["articleType"] == theirs["articleType"]
            same_both += (mine["articleType"] == theirs["articleType"]
                          and mine.get("baseColour") == theirs.get("baseColour") is not None)
    return {"judged": n, "same_category": round(same_type / max(n, 1), 4),
            "same_category_colour": round(same_both / max(n, 1), 4)}


def overlap(a: list[list[tuple[str, float]]], b: list[list[tuple[str, float]]]) -> float:
    return round(float(np.mean([len({p for p, _ in x} & {p for p, _ in y}) / max(len(y), 1) for x, y in zip(a, b)])), 4)


def quality(layout: RunLayout, labels: dict[str, dict[str, str]], n: int, photos: int) -> dict:
    folder = layout.visual_index
    exact = VisualIndex.load(folder, method="exact", backend="numpy")
    queries = [q for q in heldout_queries(layout, [str(i) for i in exact.ids_], n * 2) if q in labels][:n]
    vectors = np.stack([exact.vector(q) for q in queries])
    out: dict = {"index_products": len(exact), "queries": len(queries)}
    t0 = time.perf_counter()
    base = exact.search(vectors, K, queries)
    out["exact"] = judge(queries, base, labels) | {"seconds": round(time.perf_counter() - t0, 3)}
    for backend in ("numpy", "faiss"):
        index = VisualIndex.load(folder, method="hamming", rerank=10, backend=backend)
        t0 = time.perf_counter()
        hits = index.search(vectors, K, queries)
        row = judge(queries, hits, labels) | {"seconds": round(time.perf_counter() - t0, 3),
                                               "top10_overlap_with_exact": overlap(hits, base)}
        row["difference_to_exact"] = round(abs(row["same_category"] - out["exact"]["same_category"]), 4)
        row["difference_to_exact_colour"] = round(abs(row["same_category_colour"]
                                                      - out["exact"]["same_category_colour"]), 4)
        out[f"hamming_rerank10_{backend}"] = row
    if photos and (layout.root / "encoder" / "model.safetensors").exists():
        from pinlanding.encoders.bundle import load_bundle
        from pinlanding.encoders.visual import photo_size

        bundle = load_bundle(layout.dir("encoder"), device="cpu")
        chosen = [q for q in queries if (p := image_of(q)) and p.exists()][:photos]
        pixels = np.stack([decode_upload(image_of(q).read_bytes(), photo_size(bundle), 10**8) for q in chosen])
        found = exact.search(embed_photo(bundle, pixels), K, chosen)
        out["photo_only_queries"] = judge(chosen, found, labels) | {"queries": len(chosen)}
    return out


def image_of(pid: str) -> Path | None:
    return LABELS / "images" / f"{pid}.jpg"


async def post_photos(base: str, photos: list[bytes], concurrency: int) -> tuple[list[float], float, int]:
    """POST every photo to /search/image with ``concurrency`` in flight; (latencies, wall seconds, errors)."""
    sem = asyncio.Semaphore(concurrency)
    times: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        async def one(data: bytes) -> None:
            nonlocal errors
            async with sem:
                t0 = time.perf_counter()
                res = await client.post("/search/image", content=data, headers={"content-type": "image/jpeg"})
                times.append(time.perf_counter() - t0)
                errors += res.status_code != 200
        t0 = time.perf_counter()
        await asyncio.gather(*(one(p) for p in photos))
        return times, time.perf_counter() - t0, errors


def summary(times: list[float], wall: float, errors: int) -> dict:
    ms = sorted(t * 1000 for t in times)
    pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 1)  # noqa: E731
    return {"requests": len(ms), "errors": errors, "p50_ms": round(statistics.median(ms), 1), "p95_ms": pick(0.95),
            "p99_ms": pick(0.99), "max_ms": round(ms[-1], 1), "per_second": round(len(ms) / wall, 1)}


def stand_in_run(layout: RunLayout, folder: Path) -> Path:
    """A run in ``folder`` whose artifacts are ``layout``'s (linked) and whose encoder is the default
    architecture with untrained heads (ImageNet tower): a forward pass costs what the trained one's does, so
    latency can be measured on a run whose trained encoder is not there (only latency: its answers mean nothing)."""
    from pinlanding.encoders.bundle import MODEL_FILE, save_bundle
    from pinlanding.encoders.calibrate import Calibration
    from pinlanding.encoders.clip import build_encoder
    from pinlanding.encoders.config import EncoderConfig
    from pinlanding.encoders.train import model_spec

    folder.mkdir(parents=True)
    for name in ("catalog", "vocabulary", "assignments", "feeds"):
        (folder / name).symlink_to(layout.root / name)
    (folder / "encoder").mkdir()
    paths = [str(p) for p in sorted((LABELS / "images").glob("*.jpg"))[:256]]
    model = build_encoder(model_spec(EncoderConfig(), paths))
    zeros = np.zeros(1, np.float32)
    save_bundle(folder / "encoder" / MODEL_FILE, model, [("category", "stand-in")],
                Calibration(zeros, zeros, zeros, zeros, np.zeros((2, 1), np.float32)), [])
    return folder


def latency(layout: RunLayout, queries: list[str], requests: int, concurrency: int) -> dict:
    photos = [image_of(q).read_bytes() for q in queries if image_of(q).exists()]
    photos = (photos * (requests // max(len(photos), 1) + 1))[:requests]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        trained = (layout.root / "encoder" / "model.safetensors").exists()
        run = layout.root if trained else stand_in_run(layout, Path(tmp) / "run")
        proc, ready = start_server(run, port, Path(tmp), Path(tmp) / "serve.log")
        try:
            base = f"http://127.0.0.1:{port}"
            t0 = time.perf_counter()
            first = httpx.post(f"{base}/search/image", content=photos[0], timeout=600)  # loads the product tower
            first.raise_for_status()
            out = {"encoder": "the run's" if trained else "stand-in: default architecture, untrained heads",
                   "server_ready_seconds": round(ready, 2), "first_photo_seconds": round(time.perf_counter() - t0, 2)}
            out["one_at_a_time"] = summary(*asyncio.run(post_photos(base, photos[:max(1, requests // 3)], 1)))
            out[f"concurrent_{concurrency}"] = summary(*asyncio.run(post_photos(base, photos, concurrency)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return out


def scale(n: int, dim: int, part_rows: int = 100_000) -> dict:
    """Build, load and search an index of ``n`` generated products; figures per million products."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(1000, dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        products, embeddings = {}, {}
        for i, start in enumerate(range(0, n, part_rows)):
            rows = min(part_rows, n - start)
            ids = pa.array([f"g{j}" for j in range(start, start + rows)], pa.string())
            vec = centers[rng.integers(0, len(centers), rows)] + 0.5 * rng.normal(size=(rows, dim)).astype(np.float32)
            flat = pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), dim).cast(pa.list_(pa.float32()))
            hashes = pa.array([f"h{j}" for j in range(start, start + rows)], pa.string())
            name = f"part-{i:05d}"
            cols = {"product_id": ids, "content_hash": hashes,
                    "title": pa.array([f"Product {j % 50_000}" for j in range(start, start + rows)]),
                    "brand": pa.array([f"Brand {j % 977}" for j in range(start, start + rows)]),
                    "source_row": pa.array(range(start, start + rows), pa.int64())}
            products[name] = pa.table([cols.get(f.name, pa.nulls(rows, f.type)) for f in PRODUCTS], schema=PRODUCTS)
            embeddings[name] = pa.table({"product_id": ids, "content_hash": hashes,
                                         "model_version": pa.array(["g"] * rows), "embedding": flat})
        write_parts(root / "products.parquet", products, PRODUCTS)
        write_parts(root / "embeddings.parquet", embeddings, EMBEDDINGS)
        del products, embeddings
        with PeakRss() as build_mem:
            t0 = time.perf_counter()
            build_visual_index(root / "embeddings.parquet", root / "products.parquet", root / "index.parquet")
            build_s = time.perf_counter() - t0
        disk = sum(p.stat().st_size for p in (root / "index.parquet").iterdir())
        before = rss()
        t0 = time.perf_counter()
        index = VisualIndex.load(root / "index.parquet")
        load_s = time.perf_counter() - t0
        held = rss() - before
        queries = index.vectors_[rng.integers(0, n, 100)]
        t0 = time.perf_counter()
        index.search(queries, K)
        batch_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        index.search(queries[:1], K)
        one_ms = (time.perf_counter() - t0) * 1000
    per_m = 1e6 / n
    return {"products": n, "dim": dim, "build_seconds": round(build_s, 1),
            "build_seconds_per_million": round(build_s * per_m, 1),
            "build_peak_rss_gb_per_million": round((build_mem.peak - build_mem.start) * per_m / 1e9, 2),
            "load_seconds": round(load_s, 1), "index_rss_gb_per_million": round(held * per_m / 1e9, 2),
            "disk_gb_per_million": round(disk * per_m / 1e9, 2),
            "search_100_queries_ms": round(batch_ms, 1), "search_1_query_ms": round(one_ms, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "dev")
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--generated", type=int, default=1_000_000)
    ap.add_argument("--skip", nargs="*", default=[], choices=["quality", "latency", "scale"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    layout = RunLayout(args.run)
    out: dict = {"run": str(args.run)}
    index = VisualIndex.load(layout.visual_index, backend="numpy")
    if "quality" not in args.skip:
        labels = read_fields(args.labels, ("articleType", "baseColour"))
        out["quality"] = quality(layout, labels, args.queries, args.photos)
        print(json.dumps(out["quality"], indent=2), flush=True)
    if "latency" not in args.skip:
        queries = heldout_queries(layout, [str(i) for i in index.ids_], 200)
        out["latency"] = latency(layout, queries, args.requests, args.concurrency)
        print(json.dumps(out["latency"], indent=2), flush=True)
    if "scale" not in args.skip:
        out["scale"] = scale(args.generated, index.vectors_.shape[1])
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
