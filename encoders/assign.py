"""The assign stage: embed every product with Ray Data and build the product attribute graph.

Pipeline (streaming, so decoding, tokenizing and inference overlap):
``from_arrow(blocks of products)`` -> ``Preprocess`` (CPU workers: decode + resize images, tokenize
text) -> ``EmbedAndScore`` (actor pool, one GPU per actor when the cluster has GPUs: embed, score
against every vocabulary attribute, keep the top-k above their calibrated thresholds) -> driver.

Products whose ``content_hash`` and the model version are unchanged reuse their stored embedding.
An unreadable image never stops the job: the product is embedded from its text alone and recorded
in ``assignments/failures.parquet``. The graph written to ``assignments.parquet`` is the curated
extraction (``source=extraction``) plus encoder predictions (``source=encoder``), deduplicated; by
default (``assign.fill: gaps``) the encoder only fills keys the extraction left empty for a product.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pinlanding.collections.artifacts import AnyPath, as_path, location, read_table, write_table
from pinlanding.collections.config import RayConfig
from pinlanding.collections.schemas import ASSIGNMENTS, ATTRIBUTES, EMBEDDINGS, EXTRACTION_FAILURES, PRODUCTS
from pinlanding.encoders.bundle import EncoderBundle, Scorer, load_bundle
from pinlanding.encoders.clip import build_tokenizer
from pinlanding.encoders.config import AssignConfig
from pinlanding.encoders.data import decode_image, product_text
from pinlanding.encoders.index import RetrievalIndex, embedding_matrix

FAILURES_FILE = "failures.parquet"
INDEX_FILE = "index_hamming.npz"


class Preprocess:
    """CPU stage: decode and resize each image, tokenize each product text (a bad image -> error string)."""

    def __init__(self, spec: dict[str, Any], image_size: tuple[int, int]) -> None:
        self.tokenizer = build_tokenizer(spec)
        self.image_size = tuple(image_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        decoded = [decode_image(p, self.image_size) for p in batch["image_path"]]
        texts = [product_text(t, list(g) if g is not None else []) for t, g in zip(batch["title"], batch["merchant_tags"])]
        return {
            "product_id": batch["product_id"], "content_hash": batch["content_hash"],
            "pixels": np.stack([d[0] for d in decoded]),
            "has_image": np.array([d[1] is None for d in decoded]),
            "image_error": np.array([d[1] or "" for d in decoded], dtype=object),
            "image_path": batch["image_path"],
            "token_ids": self.tokenizer(texts),
        }


class EmbedAndScore:
    """Model stage (Ray actor): product embeddings and their top-k calibrated attributes."""

    def __init__(self, encoder_dir: str, device: str = "auto", top_k: int = 20, min_confidence: float = 0.0) -> None:
        self.bundle = load_bundle(as_path(encoder_dir), device=device)
        self.scorer = Scorer(self.bundle.attribute_embeddings(), self.bundle.calibration, top_k, min_confidence,
                             device=self.bundle.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        emb = self.bundle.embed_batch(batch["pixels"], batch["has_image"], batch["token_ids"]).float()
        idx, conf = self.scorer.score(emb)  # on the model's device
        return {"product_id": batch["product_id"], "content_hash": batch["content_hash"], "embedding": emb.cpu().numpy(),
                "attr_idx": idx, "attr_conf": conf, "image_error": batch["image_error"],
                "image_path": batch["image_path"]}


def embed_catalogue(products: pa.Table, encoder_dir: AnyPath, bundle: EncoderBundle, cfg: AssignConfig,
                    ray_cfg: RayConfig) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Run the Ray Data pipeline over ``products``; return its output columns concatenated and timings
    (``steady_products_per_s``: throughput from the first output batch to the last, i.e. after
    Ray start-up and model loading)."""
    import ray

    from pinlanding.collections.engines import ray_session

    cols = ["product_id", "content_hash", "title", "merchant_tags", "image_path"]
    table = products.select(cols)
    with ray_session(ray_cfg):
        gpus = ray.cluster_resources().get("GPU", 0) if cfg.device != "cpu" else 0
        use_gpu = gpus > 0 and cfg.device in ("auto", "cuda")
        blocks = [table.slice(i, cfg.decode_batch_size) for i in range(0, table.num_rows, cfg.decode_batch_size)]
        ds = ray.data.from_arrow(blocks)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) - cfg.actors)  # one CPU per model actor
        # a fixed pool: decoding is the bottleneck, and scaling up from one worker costs seconds per step
        decoders = ray.data.ActorPoolStrategy(size=cfg.decode_concurrency or cpus)
        ds = ds.map_batches(Preprocess, fn_constructor_kwargs={"spec": bundle.model.spec,
                                                               "image_size": bundle.model.image_size},
                            batch_size=cfg.decode_batch_size, batch_format="numpy", compute=decoders, num_cpus=1)
        ds = ds.map_batches(EmbedAndScore, fn_constructor_kwargs={
            "encoder_dir": location(encoder_dir, absolute=True), "device": "cuda" if use_gpu else "cpu",
            "top_k": cfg.top_k, "min_confidence": cfg.min_confidence},
            batch_size=cfg.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=cfg.actors),
            num_gpus=cfg.gpus_per_actor if use_gpu else 0, num_cpus=1)
        parts: dict[str, list[np.ndarray]] = {}
        first_t, first_n, start = None, 0, time.perf_counter()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            if first_t is None:
                first_t, first_n = time.perf_counter(), len(batch["product_id"])
            for k, v in batch.items():
                parts.setdefault(k, []).append(np.asarray(v))
        end = time.perf_counter()
    n = sum(len(v) for v in parts.get("product_id", []))
    timing = {"pipeline_seconds": end - start, "first_batch_seconds": (first_t or end) - start,
              "steady_products_per_s": (n - first_n) / (end - first_t) if first_t and end > first_t else 0.0}
    return {k: np.concatenate(v) for k, v in parts.items()}, timing


def _embeddings_table(ids, hashes, emb: np.ndarray, version: str) -> pa.Table:
    flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).ravel())
    vectors = pa.FixedSizeListArray.from_arrays(flat, emb.shape[1]).cast(pa.list_(pa.float32()))
    return pa.table({"product_id": pa.array(list(ids), pa.string()), "content_hash": pa.array(list(hashes), pa.string()),
                     "model_version": pa.array([version] * len(ids), pa.string()), "embedding": vectors})


def _reusable(path: AnyPath, products: pa.Table, version: str) -> pa.Table | None:
    """Stored embeddings of this model version whose product content is unchanged."""
    if not path.exists():
        return None
    old = read_table(path, EMBEDDINGS).filter(pc.equal(pc.field("model_version"), version))
    current = set(zip(products.column("product_id").to_pylist(), products.column("content_hash").to_pylist()))
    keep = [pair in current for pair in zip(old.column("product_id").to_pylist(), old.column("content_hash").to_pylist())]
    return old.filter(pa.array(keep, pa.bool_())).combine_chunks()


def merge_graph(encoder_rows: pd.DataFrame, extraction: pd.DataFrame, exclusive: list[str],
                fill: str = "gaps") -> pd.DataFrame:
    """Curated extraction rows plus encoder rows, one row per (product, key, value).

    ``fill="gaps"``: the encoder adds values only to the keys a product's extraction left empty;
    ``fill="all"``: to any key, except single-valued ones the extraction filled. For a single-valued
    key the encoder adds only its best value.
    """
    extraction = extraction.assign(source="extraction")
    enc = encoder_rows.assign(source="encoder")
    if len(enc):
        gated = enc["key"].isin(exclusive).to_numpy() if fill == "all" else np.ones(len(enc), bool)
        known = extraction[["product_id", "key"]].drop_duplicates()
        seen = enc[["product_id", "key"]].merge(known, on=["product_id", "key"], how="left", indicator=True)
        enc = enc[~(gated & (seen["_merge"] == "both").to_numpy())]
        single = enc["key"].isin(exclusive)
        best = enc[single].sort_values("confidence", ascending=False, kind="stable").drop_duplicates(["product_id", "key"])
        enc = pd.concat([enc[~single], best])
    graph = pd.concat([extraction, enc], ignore_index=True)
    graph = graph.drop_duplicates(["product_id", "key", "value"], keep="first")  # extraction wins
    return graph.sort_values(["product_id", "key", "value"], kind="stable").reset_index(drop=True)


def assign_products(products: pa.Table, encoder_dir: AnyPath, out_dir: AnyPath, cfg: AssignConfig, ray_cfg: RayConfig,
                    extraction: pa.Table | None, embeddings_path: AnyPath) -> dict[str, Any]:
    """Embed and score ``products``; write embeddings, assignments, failures and the Hamming index."""
    t0 = time.perf_counter()
    bundle = load_bundle(encoder_dir, device="cpu")  # driver-side: spec, vocabulary, scoring of reused rows
    reused = _reusable(embeddings_path, products, bundle.version) if cfg.incremental else None
    done = set(reused.column("product_id").to_pylist()) if reused is not None else set()
    todo = products.filter(pa.array([pid not in done for pid in products.column("product_id").to_pylist()]))
    new, timing = embed_catalogue(todo, encoder_dir, bundle, cfg, ray_cfg) if todo.num_rows else ({}, {})
    embed_s = time.perf_counter() - t0

    tables, idx_parts, conf_parts, id_parts = [], [], [], []
    scorer = Scorer(bundle.attribute_embeddings(), bundle.calibration, cfg.top_k, cfg.min_confidence)
    if reused is not None and reused.num_rows:
        emb = embedding_matrix(reused)
        idx, conf = scorer.score(emb)
        tables.append(reused.select(EMBEDDINGS.names).cast(EMBEDDINGS))
        idx_parts.append(idx), conf_parts.append(conf), id_parts.append(np.asarray(reused.column("product_id").to_pylist(), dtype=object))
    failures = pd.DataFrame(columns=EXTRACTION_FAILURES.names)
    if new:
        tables.append(_embeddings_table(new["product_id"], new["content_hash"], new["embedding"],
                                        bundle.version).cast(EMBEDDINGS))
        idx_parts.append(new["attr_idx"]), conf_parts.append(new["attr_conf"]), id_parts.append(new["product_id"])
        bad = np.flatnonzero(new["image_error"] != "")
        failures = pd.DataFrame({"product_id": new["product_id"][bad], "backend": "encoder",
                                 "error": new["image_error"][bad], "raw": new["image_path"][bad]})
    embeddings = pa.concat_tables(tables) if tables else EMBEDDINGS.empty_table()
    rows = _encoder_rows(np.concatenate(id_parts) if id_parts else np.array([], object),
                         np.concatenate(idx_parts) if idx_parts else np.zeros((0, 1), np.int32),
                         np.concatenate(conf_parts) if conf_parts else np.zeros((0, 1), np.float32), bundle.vocab)
    ext = (extraction.select(["product_id", "key", "value", "confidence"]).to_pandas()
           if extraction is not None and cfg.include_extraction else pd.DataFrame(columns=["product_id", "key", "value", "confidence"]))
    ext = ext[ext["product_id"].isin(set(products.column("product_id").to_pylist()))]
    graph = merge_graph(rows, ext, bundle.exclusive_keys, cfg.fill)

    write_table(embeddings, embeddings_path, EMBEDDINGS)
    write_table(pa.Table.from_pandas(graph, preserve_index=False), out_dir / "assignments.parquet", ASSIGNMENTS)
    write_table(pa.Table.from_pandas(failures, preserve_index=False), out_dir / FAILURES_FILE, EXTRACTION_FAILURES)
    if embeddings.num_rows:
        emb = embedding_matrix(embeddings)
        RetrievalIndex("hamming").fit(embeddings.column("product_id").to_pylist(), emb).save(out_dir / INDEX_FILE)
    n = max(1, products.num_rows)
    by_source = graph["source"].value_counts().to_dict()
    return {"products": products.num_rows, "embedded": int(todo.num_rows), "reused": len(done),
            "image_failures": len(failures), "extraction_rows": int(by_source.get("extraction", 0)),
            "encoder_rows": int(by_source.get("encoder", 0)), "attributes_per_product": round(len(graph) / n, 3),
            "extraction_per_product": round(by_source.get("extraction", 0) / n, 3),
            "embed_seconds": round(embed_s, 3), "model_version": bundle.version,
            **{k: round(v, 3) for k, v in timing.items()}}


def _encoder_rows(ids: np.ndarray, idx: np.ndarray, conf: np.ndarray, vocab: list[tuple[str, str]]) -> pd.DataFrame:
    r, c = np.nonzero(idx >= 0)
    pairs = np.asarray(vocab, dtype=object).reshape(-1, 2)
    chosen = idx[r, c]
    return pd.DataFrame({"product_id": ids[r], "key": pairs[chosen, 0] if len(chosen) else [],
                         "value": pairs[chosen, 1] if len(chosen) else [], "confidence": conf[r, c]})


def run_assign(ctx) -> dict[str, Any]:
    """Stage entry: assign the curated vocabulary to every product of the catalogue."""
    layout = ctx.layout
    products = read_table(layout.products, PRODUCTS)
    extraction = read_table(layout.curated_attributes, ATTRIBUTES) if layout.curated_attributes.exists() else None
    return assign_products(products, layout.dir("encoder"), layout.dir("assignments"), ctx.cfg.assign, ctx.cfg.ray,
                           extraction, layout.embeddings)
