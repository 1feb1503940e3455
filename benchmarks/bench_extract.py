"""Benchmark of the extract stage: throughput (cold and cached) and attribute quality on the dev labels.

    python benchmarks/bench_extract.py [--catalog ../shared/datasets/myntra] [--limit N] [--engine ray|local]
        [--backend embedded] [--set extract.batch_size=512 ...] [--out runs/bench-extract]
        [--products RUN/catalog/products.parquet] [--model-only]

Runs ``run_extract`` on a fresh run folder (copying ``catalog/`` from ``runs/dev`` when it exists,
ingesting otherwise), times a cold run (empty cache, Ray start included) and a warm rerun (all
cached), then scores the attributes against the dataset's labels, per key. This script is the only
extraction code that reads labels; the stage never does. On a GPU machine the model actors get the GPU
(``extract.actor_gpus`` auto), so the same command measures the model stage there. ``--products`` takes
the catalogue from a ``products.parquet`` (e.g. one carried to a GPU machine); ``--model-only`` also times,
in this process, preprocessing alone, the extractor's batch call alone (the model actors' work) and the
sentence-model forward alone over every product's title (the ceiling of the model stage).

Matching: the evaluation's own label mapping (``pinlanding.evaluation.labels.Labels.judge_row``: label
families, synonyms, narrower values), so these figures agree with the collection metrics.
Per key: *coverage* = labelled products with any prediction; *precision* = of those, the share whose
highest-confidence value matches the label; *recall* = labelled products whose label is among the
predicted values.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import time
from collections import defaultdict
from pathlib import Path

from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.parts import count_rows
from pinlanding.collections.pipeline import Pipeline, call_stage
from pinlanding.collections.schemas import ATTRIBUTES, PRODUCTS
from pinlanding.evaluation.labels import Labels, read_labels
from pinlanding.evaluation.mapping import family_of
from pinlanding.vocab.extract import run_extract

REPO = Path(__file__).resolve().parents[1]
STEP_ORDER = ["setup", "cache lookup", "extraction job", "cache compaction", "resolve", "refine statistics 1",
              "refine statistics 2", "refine and write", "commit and failures"]  # summary.json keeps them sorted


def score(attributes_path: Path, labels: Labels, ids: set[str]) -> dict[str, dict[str, float]]:
    """Coverage, top-1 precision and any-value recall per predicted key (see the module docstring)."""
    table = read_table(attributes_path, ATTRIBUTES).select(["product_id", "key", "value", "confidence"]).to_pylist()
    predicted: dict[str, dict[str, list[tuple[float, str]]]] = defaultdict(lambda: defaultdict(list))
    for r in table:
        predicted[r["key"]][r["product_id"]].append((r["confidence"] or 0.0, r["value"]))
    out = {}
    for key, preds in sorted(predicted.items()):
        family = family_of(key)
        labelled = [p for p in labels.values.get(family, {}) if p in ids] if family else []
        if not labelled:
            continue
        covered = [p for p in labelled if p in preds]
        top_ok = sum(bool(labels.judge_row(p, key, max(preds[p])[1])) for p in covered)
        any_ok = sum(any(labels.judge_row(p, key, v) for _, v in preds[p]) for p in covered)
        out[key] = {"labelled": len(labelled), "coverage": len(covered) / len(labelled),
                    "precision": top_ok / max(len(covered), 1), "recall": any_ok / len(labelled)}
    return out


def attributes_digest(path: Path) -> str:
    """SHA-256 of the attributes rows, every column, in order (the same rows give the same digest)."""
    table = read_table(path, ATTRIBUTES)
    h = hashlib.sha256()
    for start in range(0, table.num_rows, 100_000):
        h.update(repr(table.slice(start, 100_000).to_pydict()).encode())
    return f"{h.hexdigest()[:16]} ({table.num_rows} rows)"


def time_model_stage(cfg, layout: RunLayout) -> None:
    """In-process: preprocessing alone, the extractor's batch call alone, the sentence-model forward alone."""
    import torch

    from pinlanding.collections.engines import torch_device
    from pinlanding.collections.models import load_sentence_model
    from pinlanding.vocab.extractors import create_extractor
    from pinlanding.vocab.extractors.embedded import text_attributes
    from pinlanding.vocab.extractors.prepare import PRODUCT_COLUMNS, prepare_batch

    table = read_table(layout.products, PRODUCTS).select(list(PRODUCT_COLUMNS))
    n, bs = table.num_rows, cfg.extract.batch_size
    t0 = time.perf_counter()
    prepared = [prepare_batch(table.slice(i, bs).to_pydict(), "pixels", cfg.extract.image_max_side,
                              cfg.extract.max_description_chars) for i in range(0, n, bs)]
    prep = time.perf_counter() - t0
    print(f"preprocess alone   : {prep:7.1f} s  {n / prep:8.1f} products/s  (1 process: text cleaning, image colours)")
    extractor = create_extractor(cfg.extract)
    extractor(prepared[0])  # load the model outside the timing
    t0 = time.perf_counter()
    for batch in prepared:
        extractor(batch)
    call = time.perf_counter() - t0
    print(f"extractor call     : {call:7.1f} s  {n / call:8.1f} products/s  (1 process: rules + MiniLM on the subset)")
    texts = [text_attributes(row)[1]["text"] for batch in prepared
             for row in ({k: batch[k][i] for k in batch} for i in range(len(batch["product_id"])))]
    opts = cfg.extract.embedded
    model = load_sentence_model(opts.sentence_model, torch_device(opts.device))
    model.encode(texts[: 4 * opts.encode_batch_size], batch_size=opts.encode_batch_size)  # warm-up
    for batch_size in sorted({opts.encode_batch_size, 1024}):
        t0 = time.perf_counter()
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=False)
        fwd = time.perf_counter() - t0
        print(f"MiniLM forward     : {fwd:7.1f} s  {n / fwd:8.1f} products/s  (every title, batch {batch_size}, "
              f"device {model.device}, {torch.get_num_threads()} CPU threads)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", type=Path, default=REPO / ".." / "shared" / "datasets" / "myntra")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-extract")
    ap.add_argument("--limit", type=int, default=0, help="first N products only (0: all)")
    ap.add_argument("--engine", choices=["ray", "local"], default=None)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--no-warm", action="store_true", help="skip the cached rerun")
    ap.add_argument("--products", type=Path, default=REPO / "runs" / "dev" / "catalog" / "products.parquet",
                    help="catalogue to copy (ingest --catalog when it does not exist)")
    ap.add_argument("--model-only", action="store_true", help="also time the model stage's parts alone")
    ap.add_argument("--ray-stats", action="store_true", help="print Ray Data's per-operator figures of the job")
    ap.add_argument("--digest", action="store_true",
                    help="print a SHA-256 of every attributes row in order (to compare runs of other code or settings)")
    args = ap.parse_args()

    if args.ray_stats:
        logging.basicConfig(format="%(message)s")
        logging.getLogger("pinlanding.vocab.extract").setLevel(logging.INFO)
    overrides = list(args.overrides)
    if args.engine:
        overrides.append(f"extract.engine={args.engine}")
    if args.backend:
        overrides.append(f"extract.backend={args.backend}")
    cfg = load_config(overrides=overrides)
    catalog = args.catalog.resolve()
    if args.out.exists():
        shutil.rmtree(args.out)
    layout = RunLayout(args.out)
    if args.products.exists():
        layout.dir("catalog")
        (shutil.copytree if args.products.is_dir() else shutil.copyfile)(args.products, layout.products)
    else:
        Pipeline(cfg, layout, catalog=catalog).run(["ingest"])
    if args.limit:
        products = read_table(layout.products, PRODUCTS).slice(0, args.limit)
        shutil.rmtree(layout.products) if layout.products.is_dir() else layout.products.unlink()
        write_table(products, layout.products, PRODUCTS)  # one file: read as a single part
    n = count_rows(layout.products)

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"extract benchmark: backend={cfg.extract.backend} engine={cfg.extract.engine} products={n} "
          f"device={device} batch_size={cfg.extract.batch_size} actors={cfg.extract.actors}")
    t0 = time.perf_counter()
    counts = call_stage(run_extract, cfg, layout)
    cold = time.perf_counter() - t0
    print(f"cold run : {cold:7.1f} s  {n / cold:8.1f} products/s  (Ray start and model load included) {counts}")
    if not args.no_warm:
        t0 = time.perf_counter()
        counts = call_stage(run_extract, cfg, layout)
        warm = time.perf_counter() - t0
        print(f"warm run : {warm:7.1f} s  {n / warm:8.1f} products/s  (all cached) {counts}")
    summary = json.loads((layout.dir("attributes") / "summary.json").read_text())
    print(f"attributes/product: {summary['attributes_per_product']}  failures: {summary['failures']}")
    seconds = summary["seconds"]
    where = "before these steps (ray.part_tasks)" if cfg.ray.part_tasks else "inside 'extraction job'"
    print(f"the last run's steps ({seconds['total']:.1f} s in all; Ray starts {where}):")
    steps = seconds.get("passes", {})
    for step in sorted(steps, key=lambda k: STEP_ORDER.index(k) if k in STEP_ORDER else len(STEP_ORDER)):
        print(f"  {step:22s} {steps[step]:7.1f} s")
    if args.digest:
        print(f"attributes digest: {attributes_digest(layout.attributes)}")
    if args.model_only:
        time_model_stage(cfg, layout)
    if (catalog / "styles.jsonl.gz").exists():
        ids = set(read_table(layout.products, PRODUCTS)["product_id"].to_pylist())
        print(f"{'key':10} {'labelled':>9} {'coverage':>9} {'precision':>10} {'recall':>8}")
        for key, m in score(layout.attributes, read_labels(catalog), ids).items():
            print(f"{key:10} {m['labelled']:9d} {m['coverage']:9.3f} {m['precision']:10.3f} {m['recall']:8.3f}")


if __name__ == "__main__":
    main()
