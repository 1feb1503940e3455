"""The ``extract`` stage: key-value attributes for every product, as a cached Ray Data job.

Recipe: read the catalogue; look every product's content hash up in the result cache of the
configured (backend, model, prompt version); send only the missing ones through the job
(CPU preprocessing tasks, then model actors, GPU when present); write each finished batch to the
cache as its own part file, atomically, so a crash loses at most the batches in flight; then run the
backend's catalogue-level ``refine`` pass and write ``attributes.parquet``, ``failures.parquet`` and
``summary.json``.
"""
from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pinlanding.collections.artifacts import AnyPath, as_path, json_digest, list_files, read_table, write_json, write_table
from pinlanding.collections.config import RayConfig
from pinlanding.collections.schemas import ATTRIBUTES, EXTRACTION_FAILURES, PRODUCTS
from pinlanding.vocab.config import ExtractConfig
from pinlanding.vocab.extractors import create_extractor, extractor_params, load_backends
from pinlanding.vocab.extractors.base import RESULT_SCHEMA, TRANSIENT_ERRORS, Extractor
from pinlanding.vocab.extractors.prepare import PRODUCT_COLUMNS, prepare_batch

Sink = Callable[[pa.Table], None]


class ResultCache:
    """Per-product results of one (backend, model, prompt version), as Parquet part files.

    ``root/<identity digest>/part-*.parquet``; each part is one finished batch, written atomically.
    Transient failures (timeouts, HTTP errors) are never stored, so a rerun retries them.
    """

    def __init__(self, root: str | AnyPath, identity: dict[str, str], enabled: bool = True) -> None:
        self.identity = identity
        self.enabled = enabled
        self.dir = as_path(root) / json_digest(identity)[:16]

    def parts(self) -> list[AnyPath]:
        return list_files(self.dir, "part-*.parquet")

    def load(self) -> pa.Table:
        """Every cached result (the newest row per content hash)."""
        parts = self.parts() if self.enabled else []
        if not parts:
            return RESULT_SCHEMA.empty_table()
        table = pa.concat_tables([read_table(p, RESULT_SCHEMA) for p in parts])
        return _last_per_hash(table)

    def add(self, results: pa.Table) -> None:
        """Store one batch's cacheable results as a new part file."""
        if not self.enabled:
            return
        keep = results.filter(pc.invert(pc.is_in(results["error_kind"], pa.array(sorted(TRANSIENT_ERRORS)))))
        if keep.num_rows:
            write_json(self.dir / "identity.json", self.identity)
            write_table(keep, self.dir / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet", RESULT_SCHEMA)

    def compact(self, max_parts: int) -> None:
        """Merge the part files into one once there are more than ``max_parts``."""
        parts = self.parts()
        if not self.enabled or len(parts) <= max_parts:
            return
        merged = self.load()
        write_table(merged, self.dir / f"part-{time.time_ns()}-compacted.parquet", RESULT_SCHEMA)
        for p in parts:  # a crash here leaves duplicates, which load() resolves
            p.unlink(missing_ok=True)


def _last_per_hash(table: pa.Table) -> pa.Table:
    hashes = table["content_hash"].to_pylist()
    last = {h: i for i, h in enumerate(hashes)}
    return table.take(pa.array(sorted(last.values()), pa.int64()))


def _to_table(batch: Any) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA)
    return pa.table({k: list(batch[k]) for k in RESULT_SCHEMA.names}, schema=RESULT_SCHEMA)


# ---- the job --------------------------------------------------------------------------------------

def extract_local(todo: pa.Table, extractor: Extractor, cfg: ExtractConfig, sink: Sink) -> None:
    """The same preprocessing and extraction in this process, batch by batch (tiny catalogues, tests)."""
    for start in range(0, todo.num_rows, cfg.batch_size):
        batch = todo.slice(start, cfg.batch_size).to_pydict()
        prepared = prepare_batch(batch, extractor.image_mode, cfg.image_max_side, cfg.max_description_chars)
        sink(_to_table(extractor(prepared)))


def extract_ray(todo: pa.Table, extractor: Extractor, cfg: ExtractConfig, ray_cfg: RayConfig, sink: Sink) -> None:
    """Ray Data: CPU tasks preprocess, ``cfg.actors`` model actors extract; each finished batch goes to ``sink``."""
    import ray

    from pinlanding.collections.engines import ray_session

    with ray_session(ray_cfg):
        gpus = cfg.actor_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 and cfg.backend != "openai" else 0.0
        # one block per batch, made here: a repartition would need CPU slots the actors already hold
        ds = ray.data.from_arrow([todo.slice(i, cfg.batch_size) for i in range(0, todo.num_rows, cfg.batch_size)])
        ds = ds.map_batches(prepare_batch, batch_size=cfg.batch_size, concurrency=cfg.preprocess_tasks,
                            num_cpus=cfg.preprocess_cpus,
                            fn_kwargs={"image_mode": extractor.image_mode, "max_side": cfg.image_max_side,
                                       "max_description_chars": cfg.max_description_chars})
        ds = ds.map_batches(load_backends().get(cfg.backend), batch_size=cfg.batch_size, concurrency=cfg.actors,
                            fn_constructor_kwargs=extractor_params(cfg), num_cpus=cfg.actor_cpus, num_gpus=gpus)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            sink(_to_table(batch))


# ---- outputs --------------------------------------------------------------------------------------

def explode(results: pa.Table) -> pa.Table:
    """ATTRIBUTES rows from result rows (one per product, attributes as JSON)."""
    rows: list[dict[str, Any]] = []
    for pid, attrs in zip(results["product_id"].to_pylist(), results["attributes"].to_pylist()):
        for key, value, source, conf, raw_text in json.loads(attrs or "[]"):
            rows.append({"product_id": pid, "key": key, "value": value, "source": source,
                         "confidence": conf, "raw": raw_text or None})
    return pa.Table.from_pylist(rows, schema=ATTRIBUTES) if rows else ATTRIBUTES.empty_table()


def summarize(attributes: pa.Table, failures: pa.Table, n_products: int, top: int = 15) -> dict[str, Any]:
    """Distinct values per key (with the most common), attributes per product, failures by kind."""
    keys = attributes["key"].to_pylist()
    values = attributes["value"].to_pylist()
    pids = attributes["product_id"].to_pylist()
    per_key: dict[str, Counter[str]] = {}
    for k, v in zip(keys, values):
        per_key.setdefault(k, Counter())[v] += 1
    per_product = Counter(pids)
    counts = np.array([per_product.get(p, 0) for p in set(pids)] + [0] * max(0, n_products - len(per_product)))
    products_per_key = Counter(k for k, _ in set(zip(keys, pids)))
    return {
        "products": n_products,
        "attributes": attributes.num_rows,
        "attributes_per_product": {
            "mean": round(float(counts.mean()), 3) if len(counts) else 0.0,
            "median": float(np.median(counts)) if len(counts) else 0.0,
            "max": int(counts.max()) if len(counts) else 0,
            "products_without_attributes": int(n_products - len(per_product)),
        },
        "keys": {
            k: {"distinct_values": len(c), "products": products_per_key[k],
                "coverage": round(products_per_key[k] / max(n_products, 1), 4), "top": c.most_common(top)}
            for k, c in sorted(per_key.items(), key=lambda kv: -products_per_key[kv[0]])
        },
        "sources": dict(Counter(attributes["source"].to_pylist()).most_common()),
        "failures": {"products": failures.num_rows,
                     "by_kind": dict(Counter(e.split(":")[0] for e in failures["error"].to_pylist()))},
    }


def run_extract(ctx: Any) -> dict[str, Any]:
    """Stage entry point: ``catalog/products.parquet`` -> ``attributes/`` (see the module docstring)."""
    cfg: ExtractConfig = ctx.cfg.extract
    layout = ctx.layout
    start = time.perf_counter()
    products = read_table(layout.products, PRODUCTS)
    extractor = create_extractor(cfg)
    cache = ResultCache(layout.dir("attributes") / "cache", extractor.identity(), cfg.cache)

    cached = cache.load()
    known = set(cached["content_hash"].to_pylist())
    missing = products.filter(pc.invert(pc.is_in(products["content_hash"], pa.array(sorted(known), pa.string()))))
    todo = _last_per_hash(missing.select(list(PRODUCT_COLUMNS)))  # identical content is extracted once
    fresh: list[pa.Table] = []

    def sink(batch: pa.Table) -> None:
        cache.add(batch)
        fresh.append(batch)

    if todo.num_rows:
        if cfg.engine == "ray":
            extract_ray(todo, extractor, cfg, ctx.cfg.ray, sink)
        else:
            extract_local(todo, extractor, cfg, sink)
    cache.compact(cfg.compact_after_parts)
    extract_seconds = time.perf_counter() - start

    results = _last_per_hash(pa.concat_tables([cached, *fresh]))
    results = _for_products(products, results)
    ok = results.filter(pc.equal(results["error_kind"], ""))
    attributes = extractor.refine(products, explode(ok), results)
    failed = results.filter(pc.not_equal(results["error_kind"], ""))
    failures = pa.table({
        "product_id": failed["product_id"],
        "backend": pa.array([cfg.backend] * failed.num_rows, pa.string()),
        "error": failed["error"],
        "raw": failed["raw"],
    })
    out = layout.dir("attributes")
    write_table(attributes, layout.attributes, ATTRIBUTES)
    write_table(failures, out / "failures.parquet", EXTRACTION_FAILURES)
    summary = summarize(attributes, failures, products.num_rows)
    summary.update(identity=extractor.identity(), cached_products=products.num_rows - missing.num_rows,
                   extracted_products=todo.num_rows, engine=cfg.engine,
                   seconds={"extract": round(extract_seconds, 2), "total": round(time.perf_counter() - start, 2)})
    write_json(out / "summary.json", summary)
    return {"products": products.num_rows, "attributes": attributes.num_rows, "failures": failures.num_rows,
            "extracted": todo.num_rows, "cached": summary["cached_products"], "backend": cfg.backend}


def _for_products(products: pa.Table, results: pa.Table) -> pa.Table:
    """One result row per product (results are keyed by content hash; product ids come from the catalogue)."""
    index = {h: i for i, h in enumerate(results["content_hash"].to_pylist())}
    hashes = products["content_hash"].to_pylist()
    missing = [pid for pid, h in zip(products["product_id"].to_pylist(), hashes) if h not in index]
    if missing:  # cannot happen unless a backend dropped rows; record it rather than lose products silently
        raise RuntimeError(f"{len(missing)} products got no extraction result, e.g. {missing[:5]}")
    taken = results.take([index[h] for h in hashes])
    return taken.set_column(0, "product_id", products["product_id"])
