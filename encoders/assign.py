"""The assign stage: embed every product with Ray Data and build the product attribute graph, part by part.

Pipeline (one streaming job over every product to embed, so decoding, tokenizing and inference overlap
and the model actors load once): ``from_arrow_refs(blocks)`` -> ``Preprocess`` (CPU workers: decode +
resize images, tokenize text) -> ``EmbedAndScore`` (actor pool, one GPU per actor when the cluster has
GPUs: embed, score against every vocabulary attribute, keep the top-k above their calibrated thresholds)
-> driver.

The driver never holds the catalogue. It builds the blocks one catalogue part at a time (each block
holds rows of one part, tagged with a ``part`` column, and goes to Ray's object store as it is made),
knows how many rows each part sends into the job, and consumes the output as a stream: as soon as the
last row of a part has arrived, it scores the part's reused embeddings, merges it with the same part of
the curated extraction, writes that part of ``embeddings.parquet`` and of ``assignments.parquet`` and
drops it. Both are part folders co-partitioned with the catalogue (one part per catalogue part, empty
ones included), committed when every part is written. ``failures.parquet`` stays one file: it holds
only the products whose image could not be read, a handful.

Products whose ``content_hash`` and the model version are unchanged reuse their stored embedding, read
from the same part of the previous ``embeddings.parquet`` (its listed files stay until this run commits). An unreadable
image never stops the job: the product is embedded from its text alone and recorded in
``assignments/failures.parquet``. The graph fuses the curated extraction and the encoder's calibrated
predictions per (product, key, value) (``merge_graph``): agreement raises a confidence, a contradiction on
a single-valued key lowers it, and the encoder adds values wherever its held-out precision allows, at a
confidence scaled by how often the extraction it was calibrated against is right on that key (``key_trust``).

The stage also writes the run's visual search index, ``assignments/visual_index.parquet`` (exact vectors,
binarized codes and variant keys, part by part: :mod:`pinlanding.encoders.visual`), reusing the previous
index's photo digests for unchanged products.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tqdm import tqdm

from pinlanding.collections.artifacts import AnyPath, as_path, location, read_table, write_table
from pinlanding.collections.config import RayConfig
from pinlanding.collections.stage_inputs import StageInputs, artifact
from pinlanding.collections.parts import (Part, commit_parts, count_rows, is_parted, iter_parts, part_names, read_part,
                                         write_part)
from pinlanding.collections.schemas import ASSIGNMENTS, ATTRIBUTES, EMBEDDINGS, EXTRACTION_FAILURES, PRODUCTS
from pinlanding.encoders.bundle import EncoderBundle, Scorer, load_bundle
from pinlanding.encoders.clip import build_tokenizer
from pinlanding.encoders.config import AssignConfig
from pinlanding.encoders.data import (decode_image, decode_jpegs_batched, product_text, ranked_single_valued,
                                      read_image_bytes)
from pinlanding.encoders.features import FEATURES_FILE, feature_digest, lookup, read_features, stored_rows
from pinlanding.encoders.index import embedding_matrix
from pinlanding.encoders.visual import INDEX_NAME, build_visual_index

FAILURES_FILE = "failures.parquet"
# (key, value, implied value): a product for boys is a product for kids. Together they are one statement, not
# rival values of a single-valued key (one_value, merge_graph). Kept here, not in the extraction lexicon, whose
# digest keys the extraction cache: extraction never reads these.
IMPLIED_VALUES: frozenset[tuple[str, str, str]] = frozenset({("gender", "boys", "kids"), ("gender", "girls", "kids")})
EMBED_COLUMNS = ["product_id", "content_hash", "title", "merchant_tags", "image_path"]
KEY_COLUMNS = ["product_id", "content_hash", "model_version"]


def _part_tag(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The batch's ``part`` column, passed through each stage (absent when a stage is called on a plain batch)."""
    return {"part": batch["part"]} if "part" in batch else {}


class Preprocess:
    """CPU stage: decode and resize each image, tokenize each product text (a bad image -> error string).

    With ``ship_bytes`` (the model actor has a GPU) it reads each photo's compressed bytes instead of
    decoding them: a few KB per product through the object store rather than the decoded pixels, and the
    actor decodes the batch on its GPU (:func:`pinlanding.encoders.data.decode_jpegs_batched`)."""

    def __init__(self, spec: dict[str, Any], image_size: tuple[int, int], ship_bytes: bool = False) -> None:
        self.tokenizer = build_tokenizer(spec)
        self.image_size = tuple(image_size)
        self.ship_bytes = ship_bytes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # >= 0: the model stage takes the photo's features from the store (absent: decode every photo)
        rows = np.asarray(batch.get("feature_row", np.full(len(batch["image_path"]), -1)))
        texts = [product_text(t, list(g) if g is not None else []) for t, g in zip(batch["title"], batch["merchant_tags"])]
        out = {"product_id": batch["product_id"], "content_hash": batch["content_hash"],
               "image_path": batch["image_path"], "feature_row": rows, "token_ids": self.tokenizer(texts),
               **_part_tag(batch)}
        if self.ship_bytes:
            read = [(None, None) if r >= 0 else read_image_bytes(p) for p, r in zip(batch["image_path"], rows)]
            errors = [e for _, e in read]  # an unreadable file's bytes are empty
            out["image_bytes"] = np.array([b"" if d is None else d.numpy().tobytes() for d, _ in read], dtype=object)
        else:
            blank = np.zeros((*self.image_size, 3), np.uint8)
            decoded = [(blank, None) if r >= 0 else decode_image(p, self.image_size)
                       for p, r in zip(batch["image_path"], rows)]
            errors = [e for _, e in decoded]
            out["pixels"] = np.stack([d for d, _ in decoded])
        out["has_image"] = np.array([e is None for e in errors])
        out["image_error"] = np.array([e or "" for e in errors], dtype=object)
        return out


class EmbedAndScore:
    """Model stage (Ray actor): product embeddings and their top-k calibrated attributes. Takes decoded
    ``pixels``, or compressed ``image_bytes`` that it decodes on its own device in one batch."""

    def __init__(self, encoder_dir: str, device: str = "auto", top_k: int = 20, min_confidence: float = 0.0) -> None:
        self.bundle = load_bundle(as_path(encoder_dir), device=device)
        self.store = read_features(as_path(encoder_dir) / FEATURES_FILE, feature_digest(self.bundle.model))
        self.scorer = Scorer(self.bundle.attribute_embeddings(), self.bundle.calibration, top_k, min_confidence,
                             device=self.bundle.device)
        self.cuda = self.bundle.device.startswith("cuda")
        self.local = threading.local()  # one CUDA stream per calling thread (assign.calls_per_actor)
        if self.cuda:
            torch.cuda.synchronize()  # the model and the scorer's tensors are ready before other streams read them

    def _stream(self) -> Any:
        """This thread's CUDA stream (a null context on CPU): concurrent calls queue their copies and kernels on
        their own streams, so one call's copies can overlap another's model pass."""
        if not self.cuda:
            return contextlib.nullcontext()
        if not hasattr(self.local, "stream"):
            self.local.stream = torch.cuda.Stream(device=self.bundle.device)
        return torch.cuda.stream(self.local.stream)

    def _pixels(self, batch: dict[str, np.ndarray]) -> tuple[Any, np.ndarray, np.ndarray]:
        """(pixels, has_image, image_error) of the batch, decoding its ``image_bytes`` when it has them."""
        if "image_bytes" not in batch:
            return batch["pixels"], batch["has_image"], batch["image_error"]
        has_image, errors = np.array(batch["has_image"], dtype=bool), np.array(batch["image_error"], dtype=object)
        todo = [i for i, b in enumerate(batch["image_bytes"]) if len(b)]
        size = tuple(self.bundle.model.image_size)
        pixels = torch.zeros((len(has_image), *size, 3), dtype=torch.uint8, device=self.bundle.device)
        if todo:
            data = [torch.frombuffer(bytearray(batch["image_bytes"][i]), dtype=torch.uint8) for i in todo]
            decoded, failed = decode_jpegs_batched(data, size, self.bundle.device)
            pixels[todo] = decoded
            for i, error in zip(todo, failed):
                if error is not None:
                    has_image[i], errors[i] = False, error
        return pixels, has_image, errors

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._stream():
            pixels, has_image, errors = self._pixels(batch)
            emb = self.bundle.embed_batch(pixels, has_image, batch["token_ids"], batch.get("feature_row"),
                                          self.store).float()
            idx, conf = self.scorer.score(emb)  # on the model's device; returned to the host, so synchronised
            emb = emb.cpu().numpy()
        return {"product_id": batch["product_id"], "content_hash": batch["content_hash"], "embedding": emb,
                "attr_idx": idx, "attr_conf": conf, "image_error": errors,
                "image_path": batch["image_path"], **_part_tag(batch)}


def embed_stream(blocks: Iterable[pa.Table], encoder_dir: AnyPath, bundle: EncoderBundle, cfg: AssignConfig,
                 ray_cfg: RayConfig, timing: dict[str, float]) -> Iterator[dict[str, np.ndarray]]:
    """Run the Ray Data pipeline over ``blocks`` (each put in Ray's object store as it comes) and yield
    its output batches as they arrive, in block order. At the end, fill ``timing``
    (``steady_products_per_s``: throughput from the first output batch's arrival to the last one's, i.e.
    after Ray start-up and model loading, and without what the consumer does with the last batch;
    ``steady_products_per_s_incl_consumer``: the same up to the end of the consumer's work on the last
    batch, e.g. the writing of the last part)."""
    import ray

    from pinlanding.collections.engines import ray_session

    with ray_session(ray_cfg):
        gpus = ray.cluster_resources().get("GPU", 0) if cfg.device != "cpu" else 0
        use_gpu = gpus > 0 and cfg.device in ("auto", "cuda")
        # the blocks (the text columns of the products to embed) live in Ray's object store, which spills
        # to disk, not in the driver: it reads and puts them one catalogue part at a time
        ds = ray.data.from_arrow_refs([ray.put(block) for block in blocks])
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) - cfg.actors)  # one CPU per model actor
        # a fixed pool: decoding is the bottleneck, and scaling up from one worker costs seconds per step
        decoders = ray.data.ActorPoolStrategy(size=cfg.decode_concurrency or cpus)
        ds = ds.map_batches(Preprocess, fn_constructor_kwargs={"spec": bundle.model.spec,
                                                               "image_size": bundle.model.image_size,
                                                               "ship_bytes": use_gpu and cfg.gpu_decode},
                            batch_size=cfg.decode_batch_size, batch_format="numpy", compute=decoders, num_cpus=1)
        ds = ds.map_batches(EmbedAndScore, fn_constructor_kwargs={
            "encoder_dir": location(encoder_dir, absolute=True), "device": "cuda" if use_gpu else "cpu",
            "top_k": cfg.top_k, "min_confidence": cfg.min_confidence},
            batch_size=cfg.batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=cfg.actors, max_concurrent_calls_per_actor=cfg.calls_per_actor,
                                               enable_true_multi_threading=cfg.calls_per_actor > 1),
            num_gpus=cfg.gpus_per_actor if use_gpu else 0, num_cpus=1)
        yield from timed_stream(ds.iter_batches(batch_size=None, batch_format="numpy"), timing)


def timed_stream(batches: Iterable[dict[str, np.ndarray]], timing: dict[str, float],
                 clock: Callable[[], float] = time.perf_counter) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``batches`` unchanged; when they run out, fill ``timing``: seconds to the first and the last
    batch's arrival and to the end of the consumer's work on the last one, and the steady throughput
    (products after the first batch) up to the last arrival and up to that end. The consumer's work on a
    batch happens between two arrivals, so only its work on the last batch is outside the first rate."""
    first_t = last_t = None
    first_n = n = 0
    start = clock()
    for batch in batches:
        last_t = clock()
        if first_t is None:
            first_t, first_n = last_t, len(batch["product_id"])
        n += len(batch["product_id"])
        yield batch
    end = clock()

    def rate(until: float | None) -> float:
        if first_t is None or until is None or until <= first_t:
            return 0.0
        return (n - first_n) / (until - first_t)

    timing.update({"pipeline_seconds": end - start,
                   "first_batch_seconds": (end if first_t is None else first_t) - start,
                   "last_batch_seconds": (end if last_t is None else last_t) - start,
                   "steady_products_per_s": rate(last_t), "steady_products_per_s_incl_consumer": rate(end)})


def counted_stream(batches: Iterable[dict[str, np.ndarray]], bar: tqdm) -> Iterator[dict[str, np.ndarray]]:
    """``batches`` unchanged, each one's products counted on ``bar`` as it arrives (the longest GPU stage shows
    its progress, and a stalled pipeline shows as a bar that stops)."""
    for batch in batches:
        bar.update(len(batch["product_id"]))
        yield batch


def collect_parts(stream: Iterable[dict[str, np.ndarray]], expected: dict[str, int],
                  finish: Callable[[str, dict[str, np.ndarray]], None]) -> None:
    """Group the stream's rows by their ``part`` column and call ``finish(name, columns)`` as soon as
    all ``expected[name]`` rows of a part have arrived (in any order), so only unfinished parts are held."""
    pending: dict[str, list[dict[str, np.ndarray]]] = {}
    arrived: Counter[str] = Counter()
    for batch in stream:
        tags = np.asarray(batch["part"])
        for name in dict.fromkeys(tags.tolist()):  # the batch's parts, in order of appearance
            rows = tags == name
            pending.setdefault(name, []).append({k: np.asarray(v)[rows] for k, v in batch.items()})
            arrived[name] += int(rows.sum())
            if arrived[name] > expected.get(name, 0):
                raise RuntimeError(f"part {name} got {arrived[name]} rows from the pipeline, {expected.get(name, 0)} "
                                   "were sent: a row was duplicated")
            if arrived[name] == expected[name]:
                batches = pending.pop(name)
                finish(name, {k: np.concatenate([b[k] for b in batches]) for k in batches[0]})
    if pending or sum(arrived.values()) != sum(expected.values()):
        lost = {name: expected[name] - arrived[name] for name in expected if arrived[name] != expected[name]}
        raise RuntimeError(f"the pipeline returned fewer rows than it was sent, per part: {lost}")


def _embeddings_table(ids, hashes, emb: np.ndarray, version: str) -> pa.Table:
    flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).ravel())
    vectors = pa.FixedSizeListArray.from_arrays(flat, emb.shape[1]).cast(pa.list_(pa.float32()))
    return pa.table({"product_id": pa.array(list(ids), pa.string()), "content_hash": pa.array(list(hashes), pa.string()),
                     "model_version": pa.array([version] * len(ids), pa.string()), "embedding": vectors})


def _content_keys(table: pa.Table) -> pa.Array:
    """``product_id`` and ``content_hash`` joined: the identity of a product's content."""
    keys = pc.binary_join_element_wise(table["product_id"], pc.fill_null(table["content_hash"], ""), "\x1f")
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys


@dataclass(frozen=True)
class Sources:
    """The stage's per-product inputs, each read one part at a time: the catalogue, the curated extraction
    (None: no extraction rows in the graph) and the stored embeddings to reuse (None: embed everything)."""

    products: AnyPath
    curated: AnyPath | None
    stored: AnyPath | None
    version: str
    features: dict[str, int] = field(default_factory=dict)  # stored image features' rows (encoders/features.py)

    def reusable(self, name: str, products: pa.Table, columns: list[str] | None = None) -> pa.Table:
        """Stored embeddings of this model version whose product (of ``products``, part ``name``) is unchanged."""
        old = EMBEDDINGS.empty_table() if self.stored is None else read_part(self.stored, name, EMBEDDINGS)
        old = old.filter(pc.and_(pc.equal(old["model_version"], self.version),
                                 pc.is_in(_content_keys(old), value_set=_content_keys(products))))
        return old.select(columns) if columns else old

    def todo(self, name: str) -> pa.Table:
        """The products of part ``name`` to embed, tagged with a ``part`` column."""
        products = read_part(self.products, name, PRODUCTS, EMBED_COLUMNS)
        done = self.reusable(name, products, ["product_id"])["product_id"].combine_chunks()
        todo = products.filter(pc.invert(pc.is_in(products["product_id"], value_set=done)))
        rows = lookup(self.features, todo["product_id"].to_pylist(), todo["content_hash"].to_pylist())
        return (todo.append_column("part", pa.array([name] * todo.num_rows, pa.string()))
                .append_column("feature_row", pa.array(rows, pa.int64())))

    def extraction(self, name: str, products: pa.Table) -> pd.DataFrame:
        """The curated extraction rows of part ``name``'s products."""
        cols = ["product_id", "key", "value", "confidence"]
        if self.curated is None:
            return pd.DataFrame(columns=cols)
        table = read_part(self.curated, name, ATTRIBUTES, cols)
        return table.filter(pc.is_in(table["product_id"], value_set=products["product_id"].combine_chunks())).to_pandas()


@dataclass
class PartWriter:
    """Writes one part of the stage's outputs from the pipeline's rows for it; keeps the written parts and
    small totals (failures, rows by source), never the rows."""

    sources: Sources
    bundle: EncoderBundle
    cfg: AssignConfig
    embeddings_dir: AnyPath
    assignments_dir: AnyPath

    trust: dict[str, float] = field(default_factory=dict)  # see key_trust

    def __post_init__(self) -> None:
        self.scorer = Scorer(self.bundle.attribute_embeddings(), self.bundle.calibration, self.cfg.top_k,
                             self.cfg.min_confidence)
        self.written: dict[str, list[Part]] = {"embeddings": [], "assignments": []}
        self.failures: list[pd.DataFrame] = []
        self.by_source: Counter[str] = Counter()
        self.reused = 0

    def __call__(self, name: str, new: dict[str, np.ndarray]) -> None:
        products = read_part(self.sources.products, name, PRODUCTS, ["product_id", "content_hash"])
        reused = self.sources.reusable(name, products)
        tables, ids, idx, conf = [], [], [], []
        if reused.num_rows:
            i, c = self.scorer.score(embedding_matrix(reused))
            tables.append(reused), ids.append(np.asarray(reused["product_id"].to_pylist(), dtype=object))
            idx.append(i), conf.append(c)
        if new:
            tables.append(_embeddings_table(new["product_id"], new["content_hash"], new["embedding"],
                                            self.bundle.version))
            ids.append(new["product_id"]), idx.append(new["attr_idx"]), conf.append(new["attr_conf"])
            bad = np.flatnonzero(new["image_error"] != "")
            self.failures.append(pd.DataFrame({"product_id": new["product_id"][bad], "backend": "encoder",
                                               "error": new["image_error"][bad], "raw": new["image_path"][bad]}))
        embeddings = pa.concat_tables([t.cast(EMBEDDINGS) for t in tables]) if tables else EMBEDDINGS.empty_table()
        rows = _encoder_rows(np.concatenate(ids) if ids else np.array([], object),
                             np.concatenate(idx) if idx else np.zeros((0, 1), np.int32),
                             np.concatenate(conf) if conf else np.zeros((0, 1), np.float32), self.bundle.vocab)
        graph = merge_graph(rows, self.sources.extraction(name, products), self.bundle.exclusive_keys, self.cfg.fill,
                            self.trust, self.cfg.min_confidence)
        self.written["embeddings"].append(write_part(self.embeddings_dir, name, embeddings, EMBEDDINGS))
        self.written["assignments"].append(write_part(self.assignments_dir, name,
                                                      pa.Table.from_pandas(graph, preserve_index=False), ASSIGNMENTS))
        self.by_source.update(graph["source"].value_counts().to_dict())
        self.reused += reused.num_rows


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 0.01, 0.99)
    return np.log(p / (1 - p))


def pool_evidence(p: np.ndarray, q: np.ndarray, agree: bool = True) -> np.ndarray:
    """Two calibrated probabilities of one value pooled in log-odds (independent evidence, even prior):
    ``agree`` raises the confidence; otherwise ``q`` is the probability of a rival value of a single-valued
    key, and lowers it (e.g. 0.9 from the text against 0.9 for another value from the model gives 0.5)."""
    z = _logit(p) + (1 if agree else -1) * _logit(q)
    return (1 / (1 + np.exp(-z))).astype(np.float32)


def implied_rows(rows: pd.DataFrame) -> np.ndarray:
    """True for the rows (product_id, key, value) whose value another value of the same product and key implies
    (``IMPLIED_VALUES``: "boys" implies "kids")."""
    table = pd.DataFrame(sorted(IMPLIED_VALUES), columns=["key", "value", "_implied"])
    pair = ["product_id", "key", "value"]
    hits = (rows[pair].merge(table, on=["key", "value"])[["product_id", "key", "_implied"]]
            .rename(columns={"_implied": "value"}).drop_duplicates())
    return rows[pair].merge(hits, on=pair, how="left", indicator=True)["_merge"].eq("both").to_numpy()


def _implies(keys: pd.Series, values: pd.Series, implied: pd.Series) -> np.ndarray:
    """Per row, whether ``values`` implies ``implied`` on ``keys`` (``IMPLIED_VALUES``)."""
    return np.fromiter(((k, v, i) in IMPLIED_VALUES for k, v, i in zip(keys, values, implied)), bool, len(keys))


def one_value(extraction: pd.DataFrame, exclusive: list[str]) -> pd.DataFrame:
    """The extraction's rows with the values of each single-valued key sharing one unit of probability: the most
    confident keeps its confidence ``c_1``; the values ranked below share what it leaves, ``1 - c_1``, in
    proportion to their own confidences, never above them. A product has one colour; a second colour word after
    the title's first names a trim or a print, and keeping its own prior made it as confident as the first. When
    the first is wrong, the product's colour is usually another the text names, so the rest share ``1 - c_1``
    whole (the product of each one's doubt, ``c_i * prod_{j<i}(1 - c_j)``, put a title's second colour at a
    fifth of how often it is the product's). A value another of the product's values implies ("kids" beside
    "boys") is no rival: it keeps its own confidence and takes no share."""
    single, part = ranked_single_valued(extraction, exclusive)
    if not single.any():
        return extraction
    implied = implied_rows(part)
    kept, part = part[implied], part[~implied]
    conf = part["confidence"].fillna(1.0).clip(upper=1.0).astype(np.float64)
    groups = [part["product_id"], part["key"]]
    first = conf.groupby(groups).cumcount().eq(0)
    top = conf.where(first).groupby(groups).transform("max")
    below = conf.where(~first, 0.0).groupby(groups).transform("sum")
    shared = (1.0 - top) * conf / below.where(below > 0, 1.0)
    part = part.assign(confidence=conf.where(first, np.minimum(conf, shared)).astype(np.float32))
    return pd.concat([extraction[~single], kept, part])


def key_trust(curated: AnyPath | None) -> dict[str, float]:
    """Per key, the mean confidence of the curated extraction's rows, read part by part: how often the reference
    the encoder was trained and calibrated against is itself right (extraction confidences are calibrated priors:
    a title's colour 0.9, a material only the description names 0.6)."""
    if curated is None or not as_path(curated).exists():
        return {}
    cols = ["key", "confidence"]
    tables = ((t for _, t in iter_parts(curated, ATTRIBUTES, cols)) if is_parted(curated)
              else [read_table(curated, ATTRIBUTES).select(cols)])
    total: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for part in tables:
        sums = (part.set_column(1, "confidence", pc.fill_null(part["confidence"], 1.0))
                .group_by("key").aggregate([("confidence", "sum"), ("confidence", "count")]))
        for key, conf, n in zip(*(sums[c].to_pylist() for c in ("key", "confidence_sum", "confidence_count"))):
            total[key] += conf
            count[key] += n
    return {key: total[key] / count[key] for key in sorted(count)}


def merge_graph(encoder_rows: pd.DataFrame, extraction: pd.DataFrame, exclusive: list[str],
                fill: str = "all", trust: dict[str, float] | None = None, min_confidence: float = 0.0) -> pd.DataFrame:
    """The attribute graph: one row per (product, key, value) with a confidence fused from the extraction
    (what the text says) and the encoder (what the image and text model says).

    * both give the value: confidences pooled (raised), ``source=extraction+encoder``;
    * a single-valued key where the encoder's best value contradicts the extraction: the extraction's value
      stays alone, its confidence lowered by the encoder's (unless the encoder's value is one the text ranks
      above it: :func:`one_value` already counted that); no second value is added;
    * the encoder alone: its calibrated confidence, ``source=encoder`` (a single-valued key: its best value),
      times ``trust[key]`` when given: the encoder's confidence is that the extraction would agree, and the
      extraction is right on that key about ``trust[key]`` of the time; rows then below ``min_confidence`` go;
    * ``fill="gaps"``: the encoder adds values only to keys the extraction left empty for the product.

    First, on a single-valued key the extraction's values share one unit of probability (:func:`one_value`).
    """
    ext = one_value(extraction, exclusive).assign(source="extraction")
    enc = encoder_rows.assign(source="encoder")
    if not len(enc):
        return ext.sort_values(["product_id", "key", "value"], kind="stable").reset_index(drop=True)
    single = enc["key"].isin(exclusive)
    enc = pd.concat([enc[~single], enc[single].sort_values("confidence", ascending=False, kind="stable")
                     .drop_duplicates(["product_id", "key"])])
    covered = enc[["product_id", "key"]].merge(ext[["product_id", "key"]].drop_duplicates(), how="left",
                                                indicator=True)["_merge"].eq("both").to_numpy()
    if fill == "gaps":
        enc, covered = enc[~covered], covered[~covered]
    pair = ["product_id", "key", "value"]
    stated = ext[pair + ["confidence"]].rename(columns={"value": "_rival", "confidence": "_rival_stated"})
    ext = ext.merge(enc[pair + ["confidence"]].rename(columns={"confidence": "_enc"}), on=pair, how="left")
    ext["_stated"] = ext["confidence"]
    agree = ext["_enc"].notna().to_numpy()
    ext.loc[agree, "confidence"] = pool_evidence(ext.loc[agree, "confidence"], ext.loc[agree, "_enc"])
    ext.loc[agree, "source"] = "extraction+encoder"
    rival = enc[enc["key"].isin(exclusive)][["product_id", "key", "value", "confidence"]]
    rival = rival.rename(columns={"value": "_rival", "confidence": "_rival_conf"})
    ext = ext.merge(rival, on=["product_id", "key"], how="left")
    ext = ext.merge(stated, on=["product_id", "key", "_rival"], how="left")
    # a rival the text itself ranks above this value is evidence one_value already counted: the encoder learned
    # a title's first colour, so its agreeing with it says nothing new about the second
    ranked_below = (ext["_rival_stated"] >= ext["_stated"]).to_numpy()
    implied = _implies(ext["key"], ext["_rival"], ext["value"])  # "boys" confirms "kids"
    contra = (ext["_rival"].notna() & (ext["_rival"] != ext["value"])).to_numpy() & ~ranked_below & ~implied
    ext.loc[contra, "confidence"] = pool_evidence(ext.loc[contra, "confidence"], ext.loc[contra, "_rival_conf"],
                                                  agree=False)
    ext = ext.drop(columns=["_enc", "_rival", "_rival_conf", "_rival_stated", "_stated"])
    new = enc[~(covered & enc["key"].isin(exclusive).to_numpy())]  # never a second value of a single-valued key
    if trust:
        factor = np.fromiter((trust.get(k, 1.0) for k in new["key"]), np.float32, len(new))
        new = new.assign(confidence=(new["confidence"].to_numpy(np.float32) * factor))
        new = new[new["confidence"] >= min_confidence]
    graph = pd.concat([ext, new], ignore_index=True).drop_duplicates(pair, keep="first")  # agreeing rows: extraction's
    return graph.sort_values(pair, kind="stable").reset_index(drop=True)


def assign_products(products: AnyPath, encoder_dir: AnyPath, out_dir: AnyPath, cfg: AssignConfig, ray_cfg: RayConfig,
                    curated: AnyPath | None, embeddings_path: AnyPath) -> dict[str, Any]:
    """Embed and score the catalogue at ``products`` part by part; write embeddings, assignments and failures."""
    t0 = time.perf_counter()
    products, out_dir, embeddings_path = as_path(products), as_path(out_dir), as_path(embeddings_path)
    bundle = load_bundle(encoder_dir, device="cpu")  # driver-side: spec, vocabulary, scoring of reused rows
    previous = embeddings_path if is_parted(embeddings_path) else None  # readable until this run commits its own
    sources = Sources(products, curated if cfg.include_extraction else None, previous if cfg.incremental else None,
                      bundle.version, stored_rows(as_path(encoder_dir) / FEATURES_FILE, feature_digest(bundle.model)))
    assignments_path = out_dir / "assignments.parquet"
    writer = PartWriter(sources, bundle, cfg, embeddings_path, assignments_path, key_trust(curated))
    names = part_names(products)
    expected, from_store = {}, 0
    for name in names:
        todo = sources.todo(name)
        expected[name] = todo.num_rows
        from_store += int(pc.sum(pc.greater_equal(todo["feature_row"], 0)).as_py() or 0)
    for name in names:
        if not expected[name]:
            writer(name, {})
    timing: dict[str, float] = {}
    if sum(expected.values()):
        blocks = (block for name in names if expected[name]
                  for block in _blocks(sources.todo(name), cfg.decode_batch_size))
        stream = embed_stream(blocks, encoder_dir, bundle, cfg, ray_cfg, timing)
        with tqdm(total=sum(expected.values()), desc="assign: embedding", unit=" product", unit_scale=True) as bar:
            collect_parts(counted_stream(stream, bar), expected, writer)
    commit_parts(embeddings_path, writer.written["embeddings"], EMBEDDINGS)
    commit_parts(assignments_path, writer.written["assignments"], ASSIGNMENTS)
    visual = build_visual_index(embeddings_path, products, out_dir / INDEX_NAME, assignments_path)
    failures = pd.concat(writer.failures) if writer.failures else pd.DataFrame(columns=EXTRACTION_FAILURES.names)
    write_table(pa.Table.from_pandas(failures, preserve_index=False), out_dir / FAILURES_FILE, EXTRACTION_FAILURES)
    n = max(1, count_rows(products))
    rows = sum(writer.by_source.values())
    extraction = writer.by_source["extraction"] + writer.by_source["extraction+encoder"]
    return {"products": count_rows(products), "parts": len(names),
            "embedded": sum(expected.values()), "stored_image_features": from_store, "reused": writer.reused, "image_failures": len(failures),
            "extraction_rows": extraction, "encoder_rows": writer.by_source["encoder"],
            "confirmed_rows": writer.by_source["extraction+encoder"],  # extraction rows the encoder agreed with
            "attributes_per_product": round(rows / n, 3),
            "extraction_per_product": round(extraction / n, 3),
            "embed_seconds": round(time.perf_counter() - t0, 3), "model_version": bundle.version, **visual,
            **{k: round(v, 3) for k, v in timing.items()}}


def _blocks(table: pa.Table, rows: int) -> Iterator[pa.Table]:
    return (table.slice(i, rows) for i in range(0, table.num_rows, rows))


def _encoder_rows(ids: np.ndarray, idx: np.ndarray, conf: np.ndarray, vocab: list[tuple[str, str]]) -> pd.DataFrame:
    r, c = np.nonzero(idx >= 0)
    pairs = np.asarray(vocab, dtype=object).reshape(-1, 2)
    chosen = idx[r, c]
    return pd.DataFrame({"product_id": ids[r], "key": pairs[chosen, 0] if len(chosen) else [],
                         "value": pairs[chosen, 1] if len(chosen) else [], "confidence": conf[r, c]})


@dataclass(frozen=True)
class AssignInputs(StageInputs):
    """The assign stage reads the catalogue, the curated vocabulary's attributes and the encoder; ``extraction`` is
    what those attributes were curated from: a scoped rebuild maps the graph only while it is unchanged."""

    outputs = ("assignments",)
    catalog: AnyPath = artifact("catalog")
    vocabulary: AnyPath = artifact("vocabulary")
    encoder: AnyPath = artifact("encoder")
    extraction: AnyPath = artifact("attributes")


class AssignCounts(TypedDict, total=False):
    """:func:`assign_products`'s counts; the timings are there only when products were embedded."""

    products: int
    parts: int
    embedded: int
    stored_image_features: int
    reused: int
    image_failures: int
    extraction_rows: int
    encoder_rows: int
    confirmed_rows: int
    attributes_per_product: float
    extraction_per_product: float
    embed_seconds: float
    model_version: str
    visual_index_rows: int
    visual_index_reused: int
    pipeline_seconds: float
    first_batch_seconds: float
    last_batch_seconds: float
    steady_products_per_s: float
    steady_products_per_s_incl_consumer: float


def run_assign(cfg: AssignConfig, ray_cfg: RayConfig, inputs: AssignInputs) -> AssignCounts:
    """Stage entry: assign the curated vocabulary to every product of the catalogue."""
    layout = inputs.layout
    curated = layout.curated_attributes if layout.curated_attributes.exists() else None
    return assign_products(layout.products, layout.dir("encoder"), layout.dir("assignments"), cfg, ray_cfg,
                           curated, layout.embeddings)
