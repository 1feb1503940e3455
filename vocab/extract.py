"""The ``extract`` stage: key-value attributes for every product, as a cached Ray Data job.

Recipe, part by part over the catalogue (``map_parts``), so the driver never holds the products or
their results: look each part's content hashes up in the result cache of the configured (backend,
model, prompt version) and spill the missing products to a scratch folder; send them through one
streaming job (CPU preprocessing tasks, then model actors, GPU when present), which writes each
finished batch to the cache as its own part file, atomically, so a crash loses at most the batches in
flight; resolve each part's results; run the backend's catalogue-level refine pass (per-part partial
statistics merged on the driver, then a per-part apply); write ``attributes.parquet`` as a part folder
co-partitioned with the catalogue, ``failures.parquet`` (one file: failures are few) and ``summary.json``
(from per-part counts).
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pinlanding.collections import parts
from pinlanding.collections.artifacts import (AnyPath, arrow_source, as_path, atomic_path, json_digest, list_files,
                                              location, make_dirs, read_table, stamp, write_json, write_table)
from pinlanding.collections.config import RayConfig
from pinlanding.collections.engines import map_parts, ray_session
from pinlanding.collections.schemas import ATTRIBUTES, EXTRACTION_FAILURES, PRODUCTS
from pinlanding.collections.stage_inputs import StageInputs, artifact
from pinlanding.vocab.config import ExtractConfig
from pinlanding.vocab.extractors import create_extractor, extractor_params, load_backends
from pinlanding.vocab.extractors.base import RESULT_SCHEMA, TRANSIENT_ERRORS, Extractor, RefineInput, Refiner
from pinlanding.vocab.extractors.prepare import PRODUCT_COLUMNS, prepare_batch

Sink = Callable[[pa.Table], None]
_log = logging.getLogger(__name__)


class ResultCache:
    """Per-product results of one (backend, model, prompt version), as Parquet part files.

    ``root/<identity digest>/part-*.parquet``; each part is one finished batch, written atomically.
    Transient failures (timeouts, HTTP errors) are never stored, so a rerun retries them. Lookups
    read only the rows of the hashes asked for (:func:`lookup_results`: each row group's hash column, then
    the groups that hold a wanted hash): content hashes are random, so every file is looked at whatever
    the layout, but a batch is one row group and its products come from adjacent catalogue parts (one,
    mostly), so a part's lookup decodes the cache's hashes and little more than its own results, one row
    group at a time, while the cache stays append-only and crash-safe.
    """

    def __init__(self, root: str | AnyPath, identity: dict[str, str], enabled: bool = True) -> None:
        self.identity = identity
        self.enabled = enabled
        self.dir = as_path(root) / json_digest(identity)[:16]
        self._identity_written = False

    def parts(self) -> list[AnyPath]:
        return list_files(self.dir, "part-*.parquet") if self.enabled else []

    def load(self) -> pa.Table:
        """Every cached result (the newest row per content hash): for tests and small caches only."""
        tables = [read_table(p, RESULT_SCHEMA) for p in self.parts()]
        return _last_per_hash(pa.concat_tables(tables)) if tables else RESULT_SCHEMA.empty_table()

    def lookup(self, hashes: pa.Array, columns: list[str] | None = None, extra: list[AnyPath] = ()) -> pa.Table:
        """The newest cached row of each of ``hashes`` (``extra`` files, read last, win over the cache)."""
        return lookup_results([*self.parts(), *extra], hashes, columns)

    def add(self, results: pa.Table) -> pa.Table:
        """Store one batch's cacheable results as a new part file; return the rows not stored."""
        if not self.enabled:
            return results
        transient = pc.is_in(results["error_kind"], pa.array(sorted(TRANSIENT_ERRORS)))
        keep = results.filter(pc.invert(transient))
        if keep.num_rows:
            if not self._identity_written:
                write_json(self.dir / "identity.json", self.identity)
                self._identity_written = True
            write_table(keep, new_part_path(self.dir), RESULT_SCHEMA)
        return results.filter(transient)

    def compact(self, max_parts: int) -> None:
        """Merge the part files into one, streamed file by file, once there are more than ``max_parts``.
        Superseded rows are kept (``lookup`` takes the newest), so no step holds the whole cache."""
        files = self.parts()
        if len(files) <= max_parts:
            return
        schema = stamp(RESULT_SCHEMA.empty_table(), RESULT_SCHEMA).schema
        with atomic_path(self.dir / f"part-{time.time_ns()}-compacted.parquet") as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for f in files:
                    writer.write_table(stamp(read_table(f, RESULT_SCHEMA), RESULT_SCHEMA))
        for f in files:  # a crash here leaves duplicates, which lookups resolve
            f.unlink(missing_ok=True)


def new_part_path(folder: AnyPath) -> AnyPath:
    """A new batch file name in ``folder``; names sort in write order (newest last)."""
    return folder / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"


def lookup_results(files: list[AnyPath], hashes: pa.Array, columns: list[str] | None = None) -> pa.Table:
    """Rows of ``files`` whose content hash is in ``hashes``, the newest (last file, last row) per hash.

    Row group by row group, the hash column first: a row group is read whole only when it holds a wanted
    hash. Each written batch is one row group (compaction keeps them), and a batch holds the products of
    adjacent catalogue parts (one, mostly), so a part's lookup decodes the cache's hashes, not all its results."""
    names = RESULT_SCHEMA.names if columns is None else columns
    schema = pa.schema([RESULT_SCHEMA.field(c) for c in names])
    found = []
    for f in files:
        source, filesystem = arrow_source(f)
        with (filesystem.open(source, "rb") if filesystem is not None else open(source, "rb")) as handle:
            pf = pq.ParquetFile(handle)
            for group in range(pf.num_row_groups):
                mask = pc.is_in(pf.read_row_group(group, columns=["content_hash"])["content_hash"], value_set=hashes)
                if pc.any(mask).as_py():
                    found.append(pf.read_row_group(group, columns=names).filter(mask).cast(schema))
    return _last_per_hash(pa.concat_tables(found)) if found else schema.empty_table()


def _last_per_hash(table: pa.Table) -> pa.Table:
    hashes = table["content_hash"].to_pylist()
    last = {h: i for i, h in enumerate(hashes)}
    return table.take(pa.array(sorted(last.values()), pa.int64()))


def _to_table(batch: Any) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA)
    return pa.table({k: list(batch[k]) for k in RESULT_SCHEMA.names}, schema=RESULT_SCHEMA)


# ---- the job --------------------------------------------------------------------------------------

def extract_local(todo: list[AnyPath], extractor: Extractor, cfg: ExtractConfig, sink: Sink) -> None:
    """The same preprocessing and extraction in this process, file by file and batch by batch (small runs, tests)."""
    for f in todo:
        table = read_table(f, PRODUCTS).select(list(PRODUCT_COLUMNS))
        for start in range(0, table.num_rows, cfg.batch_size):
            batch = table.slice(start, cfg.batch_size).to_pydict()
            prepared = prepare_batch(batch, extractor.image_mode, cfg.image_max_side, cfg.max_description_chars)
            sink(_to_table(extractor(prepared)))


def _read_spilled(batch: dict[str, Any]) -> pa.Table:
    """The products of the spilled files named in ``batch["path"]``."""
    return pa.concat_tables([read_table(as_path(p), PRODUCTS).select(list(PRODUCT_COLUMNS)) for p in batch["path"]])


def extract_ray(todo: list[AnyPath], extractor: Extractor, cfg: ExtractConfig, ray_cfg: RayConfig, sink: Sink) -> None:
    """Ray Data: read the spilled products, CPU tasks preprocess, ``cfg.actors`` model actors extract;
    each finished batch goes to ``sink``."""
    import ray

    with ray_session(ray_cfg):
        gpus = cfg.actor_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 and cfg.backend != "openai" else 0.0
        # One item per spilled file (a batch of products), read by small tasks of their own operator (no
        # concurrency cap, so Ray does not fuse the reads into the slower, capped preprocessing). Not
        # read_parquet: its file-listing task asks for a whole CPU, which never frees up while the actors
        # hold their slots.
        ds = ray.data.from_items([{"path": location(f, absolute=True)} for f in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(_read_spilled, batch_size=1, num_cpus=cfg.preprocess_cpus)
        ds = ds.map_batches(prepare_batch, batch_size=cfg.batch_size, concurrency=cfg.preprocess_tasks,
                            num_cpus=cfg.preprocess_cpus,
                            fn_kwargs={"image_mode": extractor.image_mode, "max_side": cfg.image_max_side,
                                       "max_description_chars": cfg.max_description_chars})
        ds = ds.map_batches(load_backends().get(cfg.backend), batch_size=cfg.batch_size, concurrency=cfg.actors,
                            fn_constructor_kwargs=extractor_params(cfg), num_cpus=cfg.actor_cpus, num_gpus=gpus)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            sink(_to_table(batch))
        if _log.isEnabledFor(logging.INFO):
            _log.info("extraction job, Ray Data's figures:\n%s", ds.stats())


# ---- outputs --------------------------------------------------------------------------------------

def explode(results: pa.Table) -> pa.Table:
    """ATTRIBUTES rows from result rows (one per product, attributes as JSON)."""
    columns: dict[str, list[Any]] = {name: [] for name in ATTRIBUTES.names}
    pids, keys, values, sources, confs, raws = columns.values()
    for pid, attrs in zip(results["product_id"].to_pylist(), results["attributes"].to_pylist()):
        for key, value, source, conf, raw_text in json.loads(attrs or "[]"):
            pids.append(pid)
            keys.append(key)
            values.append(value)
            sources.append(source)
            confs.append(conf)
            raws.append(raw_text or None)
    return pa.table(columns, schema=ATTRIBUTES)


@dataclass
class AttributeCounts:
    """Mergeable statistics of ATTRIBUTES rows (products are never split between parts)."""

    rows: int = 0
    values: dict[str, Counter[str]] = field(default_factory=dict)  # key -> value -> rows
    products_per_key: Counter[str] = field(default_factory=Counter)
    per_product: Counter[int] = field(default_factory=Counter)  # attributes per product -> products (>= 1)
    sources: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, attributes: pa.Table) -> "AttributeCounts":
        keys, values, pids = (attributes[c].to_pylist() for c in ("key", "value", "product_id"))
        counts = cls(rows=attributes.num_rows, sources=Counter(attributes["source"].to_pylist()))
        for k, v in zip(keys, values):
            counts.values.setdefault(k, Counter())[v] += 1
        counts.products_per_key = Counter(k for k, _ in set(zip(keys, pids)))
        counts.per_product = Counter(Counter(pids).values())
        return counts

    def add(self, other: "AttributeCounts") -> None:
        self.rows += other.rows
        for k, c in other.values.items():
            self.values.setdefault(k, Counter()).update(c)
        self.products_per_key.update(other.products_per_key)
        self.per_product.update(other.per_product)
        self.sources.update(other.sources)


def _histogram_stats(hist: Counter[int]) -> tuple[float, float, int]:
    """Mean, median and max of the values a ``{value: count}`` histogram describes (as numpy computes them)."""
    n = sum(hist.values())
    if not n:
        return 0.0, 0.0, 0
    ordered = sorted(hist.items())
    values = np.array([v for v, _ in ordered])
    ends = np.cumsum([c for _, c in ordered])
    lo, hi = values[np.searchsorted(ends, (n - 1) // 2, "right")], values[np.searchsorted(ends, n // 2, "right")]
    return float((values * [c for _, c in ordered]).sum() / n), float((lo + hi) / 2), int(values[-1])


def summarize(counts: AttributeCounts, failures: pa.Table, n_products: int, top: int = 15) -> dict[str, Any]:
    """Distinct values per key (with the most common), attributes per product, failures by kind."""
    with_attributes = sum(counts.per_product.values())
    mean, median, most = _histogram_stats(counts.per_product + Counter({0: max(0, n_products - with_attributes)}))
    per_key = counts.products_per_key
    return {
        "products": n_products,
        "attributes": counts.rows,
        "attributes_per_product": {
            "mean": round(mean, 3),
            "median": median,
            "max": most,
            "products_without_attributes": int(n_products - with_attributes),
        },
        "keys": {
            k: {"distinct_values": len(c), "products": per_key[k],
                "coverage": round(per_key[k] / max(n_products, 1), 4), "top": c.most_common(top)}
            for k, c in sorted(counts.values.items(), key=lambda kv: -per_key[kv[0]])
        },
        "sources": dict(counts.sources.most_common()),
        "failures": {"products": failures.num_rows,
                     "by_kind": dict(Counter(e.split(":")[0] for e in failures["error"].to_pylist()))},
    }


# ---- the stage, part by part ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Run:
    """What the per-part functions need (picklable, for Ray tasks): paths, the cache, the backend."""

    products: AnyPath
    attributes: AnyPath  # the output part folder
    work: AnyPath  # scratch: todo/ (products to extract), fresh/ (this run's results), results/ (per part)
    cache: ResultCache
    backend: str
    batch_size: int  # products per spilled todo file (one Ray Data block each)

    def folder(self, name: str) -> AnyPath:
        return self.work / name


def _plan_part(run: _Run, name: str) -> tuple[int, int, int]:
    """Spill the part's products the cache lacks to ``todo/`` (identical content once); (products, cached, todo)."""
    products = parts.read_part(run.products, name, PRODUCTS)
    cached = run.cache.lookup(products["content_hash"].unique(), columns=["content_hash"])["content_hash"]
    missing = products.filter(pc.invert(pc.is_in(products["content_hash"], cached)))
    todo = _last_per_hash(missing)
    for i, start in enumerate(range(0, todo.num_rows, run.batch_size)):
        write_table(todo.slice(start, run.batch_size), run.folder("todo") / f"{name}-{i:05d}.parquet", PRODUCTS)
    return products.num_rows, products.num_rows - missing.num_rows, todo.num_rows


def _resolve_part(run: _Run, name: str) -> None:
    """One result row per product of the part (cache, then this run's results) into ``results/``."""
    products = parts.read_part(run.products, name, PRODUCTS, columns=["product_id", "content_hash"])
    found = run.cache.lookup(products["content_hash"].unique(), extra=list_files(run.folder("fresh")))
    write_table(_for_products(products, found), run.folder("results") / f"{name}.parquet", RESULT_SCHEMA)


def _part_input(run: _Run, name: str) -> tuple[RefineInput, pa.Table]:
    """The part's successful results with their attributes, and its failed results."""
    results = read_table(run.folder("results") / f"{name}.parquet", RESULT_SCHEMA)
    ok = results.filter(pc.equal(results["error_kind"], ""))
    return RefineInput(name, ok, explode(ok)), results.filter(pc.not_equal(results["error_kind"], ""))


def _collect_part(run: _Run, refiner: Refiner, step: int, name: str) -> Any:
    return refiner.collect(step, _part_input(run, name)[0])


def _write_part(run: _Run, refiner: Refiner | None, name: str) -> tuple[parts.Part, pa.Table, AttributeCounts]:
    """Refine and write the part's attributes; return the part, its failures and its counts."""
    part, failed = _part_input(run, name)
    attributes = refiner.apply(part) if refiner is not None else part.attributes
    failures = pa.table({"product_id": failed["product_id"],
                         "backend": pa.array([run.backend] * failed.num_rows, pa.string()),
                         "error": failed["error"], "raw": failed["raw"]})
    return parts.write_part(run.attributes, name, attributes, ATTRIBUTES), failures, AttributeCounts.of(attributes)


def _clear(run: _Run) -> None:
    for sub in ("todo", "fresh", "results"):
        for f in list_files(run.folder(sub)):
            f.unlink(missing_ok=True)


@dataclass(frozen=True)
class ExtractInputs(StageInputs):
    """The extract stage reads the catalogue."""

    outputs = ("attributes",)
    catalog: AnyPath = artifact("catalog")


class ExtractCounts(TypedDict):
    products: int
    attributes: int
    failures: int
    extracted: int  # products sent to the backend this run
    cached: int  # products whose result came from the cache
    backend: str
    parts: int


def run_extract(cfg: ExtractConfig, ray_cfg: RayConfig, inputs: ExtractInputs) -> ExtractCounts:
    """Stage entry point: ``catalog/products.parquet`` -> ``attributes/`` (see the module docstring).

    With ``ray.part_tasks`` the per-part passes run as Ray tasks, all in one Ray session with the job."""
    if not ray_cfg.part_tasks:
        return _run_extract(cfg, ray_cfg, inputs, create_extractor(cfg))
    with ray_session(ray_cfg):
        extractor = create_extractor(cfg)
        refiner = extractor.refiner()
        shared = getattr(refiner, "shared", None)  # optional: state the refiner's tasks share (a model actor)
        with shared() if shared is not None else nullcontext():
            return _run_extract(cfg, ray_cfg, inputs, extractor, refiner)


def _run_extract(cfg: ExtractConfig, ray_cfg: RayConfig, inputs: ExtractInputs, extractor: Extractor,
                 refiner: Refiner | None = None) -> ExtractCounts:
    layout = inputs.layout
    start = mark = time.perf_counter()
    passes: dict[str, float] = {}  # seconds of each step, for summary.json (bench_extract prints them)

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        passes[name] = round(now - mark, 2)
        mark = now

    out = layout.dir("attributes")
    run = _Run(layout.products, layout.attributes, out / ".work",
               ResultCache(out / "cache", extractor.identity(), cfg.cache), cfg.backend, cfg.batch_size)
    names = parts.part_names(layout.products)
    _clear(run)
    for sub in ("todo", "fresh", "results"):
        make_dirs(run.folder(sub))
    lap("setup")
    planned = map_parts(partial(_plan_part, run), names, ray_cfg, desc="cache lookup")
    lap("cache lookup")
    n_products, cached, extracted = (sum(p[i] for p in planned) for i in range(3))

    def sink(batch: pa.Table) -> None:  # this run's results: the cache, and what it does not keep in fresh/
        rest = run.cache.add(batch)
        if rest.num_rows:
            write_table(rest, new_part_path(run.folder("fresh")), RESULT_SCHEMA)

    todo = list_files(run.folder("todo"))
    if todo:
        if cfg.engine == "ray":
            extract_ray(todo, extractor, cfg, ray_cfg, sink)
        else:
            extract_local(todo, extractor, cfg, sink)
    lap("extraction job")
    run.cache.compact(cfg.compact_after_parts)
    lap("cache compaction")
    extract_seconds = time.perf_counter() - start

    map_parts(partial(_resolve_part, run), names, ray_cfg, desc="resolve results")
    lap("resolve")
    refiner = refiner if refiner is not None else extractor.refiner()
    for step in range(refiner.rounds if refiner is not None else 0):
        refiner.merge(step, map_parts(partial(_collect_part, run, refiner, step), names, ray_cfg,
                                       desc=f"refine statistics {step + 1}/{refiner.rounds}"))
        lap(f"refine statistics {step + 1}")
    written = map_parts(partial(_write_part, run, refiner), names, ray_cfg, desc="refine and write")
    lap("refine and write")
    parts.commit_parts(layout.attributes, [w[0] for w in written], ATTRIBUTES)
    failures = pa.concat_tables([w[1] for w in written]) if written else EXTRACTION_FAILURES.empty_table()
    write_table(failures, out / "failures.parquet", EXTRACTION_FAILURES)
    counts = AttributeCounts()
    for w in written:
        counts.add(w[2])
    _clear(run)
    lap("commit and failures")
    summary = summarize(counts, failures, n_products)
    summary.update(identity=extractor.identity(), cached_products=cached, extracted_products=extracted,
                   engine=cfg.engine,
                   seconds={"extract": round(extract_seconds, 2), "total": round(time.perf_counter() - start, 2),
                            "passes": passes})
    write_json(out / "summary.json", summary)
    return {"products": n_products, "attributes": counts.rows, "failures": failures.num_rows,
            "extracted": extracted, "cached": cached, "backend": cfg.backend, "parts": len(names)}


def _for_products(products: pa.Table, results: pa.Table) -> pa.Table:
    """One result row per product (results are keyed by content hash; product ids come from the catalogue)."""
    index = {h: i for i, h in enumerate(results["content_hash"].to_pylist())}
    hashes = products["content_hash"].to_pylist()
    missing = [pid for pid, h in zip(products["product_id"].to_pylist(), hashes) if h not in index]
    if missing:  # cannot happen unless a backend dropped rows; record it rather than lose products silently
        raise RuntimeError(f"{len(missing)} products got no extraction result, e.g. {missing[:5]}")
    taken = results.take(pa.array([index[h] for h in hashes], pa.int64()))
    return taken.set_column(0, "product_id", products["product_id"])
