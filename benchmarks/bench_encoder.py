"""Encoder figures on a finished run (train + assign done): quality and, optionally, throughput.

    python benchmarks/bench_encoder.py quality --run runs/dev --labels ../shared/datasets/myntra
    python benchmarks/bench_encoder.py throughput --run runs/dev      # GPU: forward ceiling vs Ray pipeline
    python benchmarks/bench_encoder.py sees --run runs/dev --labels ../shared/datasets/myntra

``quality`` prints held-out Recall@10 (Fashion200K protocol: attribute phrase -> products and
product -> attributes) against the curated extraction and against the dev labels, attributes per
product and precision vs the dev labels for extraction alone and extraction + encoder, and the
Hamming index's recall against exact search. The benchmark reads the labels; stages never do.
``sees`` asks what the encoder tells from the photo: held-out products, each key's words masked out of
the text (its extracted values and its label's words), the encoder's best value per key against the
labels: recall at >= 0.85 precision, and precision / recall at the calibrated thresholds; then the
attribute graph by source, its confidence reliability and its colour mix against the labels.
``throughput`` times photo decoding (CPU threads, and batched on the GPU), the model's forward pass alone
on pre-decoded batches (the ceiling) and the whole Ray Data assignment pipeline (decode + tokenize + embed
+ score) over every product, once per number of model actors (``--actors 1,2,3``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Callable
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import yaml

from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import PipelineConfig, RayConfig, RunConfig, load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.schemas import ASSIGNMENTS, EMBEDDINGS, PRODUCTS
from pinlanding.encoders.bundle import load_bundle
from pinlanding.encoders.config import AssignConfig, EncoderConfig
from pinlanding.encoders.data import heldout_mask, load_positives
from pinlanding.encoders.index import embedding_matrix, recall_vs_exact
from pinlanding.encoders.metrics import retrieval_metrics


def _run_config(run: Path) -> PipelineConfig:
    """The encoder, assign, ray and run sections the run recorded (other stages' sections are not needed)."""
    cfg = load_config()
    path = run / "config.yaml"
    tree = yaml.safe_load(path.read_text()) if path.exists() else {}
    return cfg.model_copy(update={
        "run": RunConfig.model_validate(tree.get("run", {})), "ray": RayConfig.model_validate(tree.get("ray", {})),
        "encoder": EncoderConfig.model_validate(tree.get("encoder", {})),
        "assign": AssignConfig.model_validate(tree.get("assign", {}))})


def quality(run: Path, labels: Path | None) -> dict:
    layout = RunLayout(run)
    cfg = _run_config(run)
    bundle = load_bundle(layout.dir("encoder"), device="cpu")
    emb_t = read_table(layout.embeddings, EMBEDDINGS)
    ids = emb_t.column("product_id").to_pylist()
    emb = embedding_matrix(emb_t)
    attr = bundle.attribute_embeddings()
    positives = load_positives(layout.curated_attributes, bundle.vocab)
    labelled = [i for i, p in enumerate(ids) if positives.get(p)]
    val = heldout_mask([ids[i] for i in labelled], cfg.encoder.val_fraction, cfg.encoder.split_block, cfg.run.seed)
    rows = np.array(labelled)[val]
    scores = emb[rows] @ attr.T
    pos = np.zeros(scores.shape, bool)
    for r, i in enumerate(rows):
        pos[r, positives[ids[i]]] = True
    out: dict = {"heldout_products": int(len(rows)), "vocabulary": len(bundle.vocab),
                 "recall@10_vs_extraction": retrieval_metrics(scores, pos, 10)}
    graph = read_table(layout.assignments, ASSIGNMENTS).to_pandas()
    n_products = read_table(layout.products, PRODUCTS).num_rows
    ext = graph[graph.source.str.contains("extraction")]  # extraction alone and confirmed by the encoder
    out["attributes_per_product"] = {"extraction": round(len(ext) / n_products, 3),
                                     "extraction+encoder": round(len(graph) / n_products, 3)}
    if labels is not None:
        from pinlanding.evaluation.labels import read_labels

        judge = read_labels(labels).judge_row
        gt = np.zeros(scores.shape, bool)
        for r, i in enumerate(rows):
            for a, (k, v) in enumerate(bundle.vocab):
                gt[r, a] = bool(judge(ids[i], k, v))
        out["recall@10_vs_labels"] = retrieval_metrics(scores, gt, 10)
        graph["correct"] = [judge(p, k, v) for p, k, v in zip(graph.product_id, graph.key, graph.value)]
        for name, part in (("extraction", ext.index), ("extraction+encoder", graph.index),
                           ("encoder_only_rows", graph.index[graph.source == "encoder"])):
            judged = graph.loc[part, "correct"].dropna()
            out.setdefault("precision_vs_labels", {})[name] = {
                "precision": round(float(judged.mean()), 4) if len(judged) else None,
                "judged_rows": int(len(judged)), "rows": int(len(part))}
        per_key = {}
        for key, part in graph.groupby("key"):
            j = part.dropna(subset=["correct"])
            per_key[key] = {src: round(float(j[j.source == src].correct.mean()), 3) if (j.source == src).any() else None
                            for src in ("extraction", "encoder")}
        out["precision_by_key"] = per_key
    q = emb[np.random.default_rng(0).choice(len(emb), min(1000, len(emb)), replace=False)]
    out["hamming_recall@10_vs_exact"] = round(recall_vs_exact(emb, q, 10), 4)
    out["hamming_rerank4_recall@10_vs_exact"] = round(recall_vs_exact(emb, q, 10, rerank=4), 4)
    out["train_epoch_seconds"] = [h["seconds"] for h in json.loads(
        (layout.dir("encoder") / "metrics.json").read_text())["history"]]
    return out


SEES_KEYS = ("category", "color", "pattern", "sleeve", "neck", "gender", "material")


def _recall_at_precision(conf: np.ndarray, correct: np.ndarray, total: int, target: float) -> float:
    """The largest share of ``total`` labelled products recovered by a confidence cut with precision >= target."""
    order = np.argsort(-conf, kind="stable")
    tp = np.cumsum(correct[order])
    ok = np.flatnonzero(tp / np.arange(1, len(order) + 1) >= target)
    return float(tp[ok[-1]] / total) if len(ok) and total else 0.0


def sees(run: Path, labels_path: Path, target: float = 0.85, image_root: Path | None = None) -> dict:
    from pinlanding.encoders.data import ProductSet, mask_values
    from pinlanding.encoders.features import FEATURES_FILE, feature_digest, read_features
    from pinlanding.encoders.images import TrainingImages
    from pinlanding.encoders.validate import combine_texts
    from pinlanding.evaluation.graph import by_source, colour_mix, judged_rows, reliability
    from pinlanding.evaluation.labels import read_labels
    from pinlanding.evaluation.mapping import family_of

    layout = RunLayout(run)
    cfg = _run_config(run)
    labels = read_labels(labels_path)
    bundle = load_bundle(layout.dir("encoder"), device="auto")
    model = bundle.model
    products = ProductSet.from_table(read_table(layout.products, PRODUCTS))
    positives = load_positives(layout.curated_attributes, bundle.vocab)
    data = products.take(np.array([i for i, p in enumerate(products.ids) if positives.get(p)], dtype=np.int64))
    val = np.flatnonzero(heldout_mask(data.ids, cfg.encoder.val_fraction, cfg.encoder.split_block, cfg.run.seed))
    held = data.take(val)
    if image_root:  # the photos copied to another folder (same file names)
        held.image_paths = [str(image_root / Path(p).name) if p else None for p in held.image_paths]
    images = TrainingImages(model, held, bundle.device, read_features(layout.dir("encoder") / FEATURES_FILE,
                                                                      feature_digest(model)), threads=4)
    has_image = images.has_image
    visual = images.visual_embeddings(np.arange(len(held.ids)), has_image)
    attr = bundle.attribute_embeddings()
    out: dict = {"heldout_products": len(val), "with_photo": int(has_image.sum()), "target_precision": target, "keys": {}}
    for key in SEES_KEYS:
        cols = np.array([i for i, (k, _) in enumerate(bundle.vocab) if k == key])
        family = family_of(key)
        if not len(cols) or family is None:
            continue
        texts = []
        for pid, text in zip(held.ids, held.texts):
            words = [bundle.vocab[i][1] for i in positives.get(pid, []) if bundle.vocab[i][0] == key]
            words += list(labels.values.get(family, {}).get(pid, ()))
            texts.append(mask_values(text, words))
        cosine = combine_texts(model, visual, model.tokenize(texts)) @ attr.T
        every = bundle.calibration.scores(cosine)
        scores, conf = every[:, cols], bundle.calibration.confidence(every)[:, cols]
        reach = bundle.calibration.in_scope(cosine)[:, cols]  # out of a scoped key's reach: no answer
        conf = np.where(reach, conf, 0.0)
        best = np.where(bundle.calibration.answers(every)[:, cols], conf, -1.0).argmax(1)
        rows = np.arange(len(best))
        top = conf[rows, best]
        above = (scores[rows, best] >= bundle.calibration.thresholds[cols][best]) & reach[rows, best]
        verdict = [labels.judge_row(pid, key, bundle.vocab[cols[b]][1]) for pid, b in zip(held.ids, best)]
        judged = np.array([v is not None for v in verdict])
        correct = np.array([bool(v) for v in verdict])
        total = int(judged.sum())
        photo = judged & has_image
        out["keys"][key] = {
            "labelled": total,
            f"recall_at_{target}": round(_recall_at_precision(top[judged], correct[judged], total, target), 4),
            "at_thresholds": {"assigned": int((above & judged).sum()),
                              "precision": round(float(correct[above & judged].mean()), 4) if (above & judged).any() else None,
                              "recall": round(float((correct & above & judged).sum() / max(1, total)), 4)},
            "top1_accuracy": round(float(correct[judged].mean()), 4) if total else None,
            "top1_accuracy_with_photo": round(float(correct[photo].mean()), 4) if photo.any() else None}
    out["train"] = {k: v for k, v in json.loads((layout.dir("encoder") / "metrics.json").read_text()).items()
                    if k in ("heldout_key_recall", "assignable_keys", "history", "prepare_seconds", "device", "spec")}
    if not layout.assignments.exists():  # the encoder alone (e.g. trained by bench_train.py on a GPU machine)
        return out
    rows = judged_rows(labels, read_table(layout.assignments, ASSIGNMENTS))
    out["graph"] = {"by_source": by_source(rows), "feed_rows": by_source(rows, cfg.feeds.min_confidence),
                    "reliability": reliability(rows), "colour_mix": colour_mix(labels, rows)}
    return out


def _resident_forward(bundle, pixels: np.ndarray, has_image: np.ndarray, tokens: np.ndarray, batch_size: int,
                      sync: Callable[[], None]) -> float:
    """Products/s of the model alone over inputs already on its device, pre-batched (no copies, no output
    transfer): the ceiling the pipeline is held against. Falls back to 0 when the inputs do not fit."""
    import torch

    try:
        batches = [tuple(torch.as_tensor(a[i:i + batch_size], device=bundle.device)
                         for a in (pixels, has_image, tokens))
                   for i in range(0, len(pixels), batch_size)]
    except torch.OutOfMemoryError:
        return 0.0
    bundle.embed_batch(*batches[0])  # warm-up at this shape
    sync()
    t = time.perf_counter()
    for img, mask, ids in batches:
        bundle.embed_batch(img, mask, ids)
    sync()
    rate = len(pixels) / (time.perf_counter() - t)
    del batches
    torch.cuda.empty_cache() if bundle.device.startswith("cuda") else None
    return rate


def decode_rates(paths: list[str | None], size: tuple[int, int], device: str, threads: tuple[int, ...] = (1, 16),
                 batch_size: int = 1024) -> dict:
    """Photos/s of decoding + resizing ``paths`` to ``size``: on the CPU (``decode_images`` on each number of
    ``threads``) and, on a GPU, batched on it from the files' bytes already in memory (the model actor's path)."""
    import torch

    from pinlanding.encoders.data import decode_images, decode_jpegs_batched, read_image_bytes

    out: dict = {"photos": len(paths)}
    for n in threads:
        t = time.perf_counter()
        decode_images(paths, size, threads=n)
        out[f"cpu_{n}_threads_photos_per_s"] = round(len(paths) / (time.perf_counter() - t), 1)
    if device.startswith("cuda"):
        data = [read_image_bytes(p)[0] for p in paths]
        decode_jpegs_batched(data[:batch_size], size, device)  # warm-up (nvJPEG handles)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, len(data), batch_size):
            decode_jpegs_batched(data[i:i + batch_size], size, device)
        torch.cuda.synchronize()
        out[f"gpu_batched_{batch_size}_photos_per_s"] = round(len(data) / (time.perf_counter() - t), 1)
    return out


def throughput(run: Path, batch_size: int, actors: list[int], repeat: int, assign_overrides: dict | None = None,
               ceiling_products: int = 200_000, decode_sample: int = 20_000,
               variants: list[dict] | None = None) -> dict:
    """Forward-only ceiling vs the Ray pipeline on every product of the run (``repeat`` times over), once per
    number of model ``actors`` and per variant, in one process: ``assign_overrides`` are assign settings for
    every pipeline (e.g. ``decode_concurrency``), each of ``variants`` more settings for one series of
    pipelines (default: one series with none). The ceiling is timed on the first ``ceiling_products`` (its
    rate does not depend on how many); decoding rates on the first ``decode_sample`` photos."""
    assign_overrides = assign_overrides or {}
    import pyarrow as pa
    import torch

    from pinlanding.encoders.assign import assign_products
    from pinlanding.encoders.data import ProductSet, decode_images

    layout = RunLayout(run)
    cfg = _run_config(run)
    base = read_table(layout.products, PRODUCTS)
    products = pa.concat_tables([base.set_column(0, "product_id", pc.binary_join_element_wise(
        base.column("product_id"), pa.scalar(f"-{r}"), "")) for r in range(repeat)]) if repeat > 1 else base
    bundle = load_bundle(layout.dir("encoder"), device="auto")
    ps = ProductSet.from_table(products.slice(0, ceiling_products))
    decoding = decode_rates(ps.image_paths[:decode_sample], bundle.model.image_size, bundle.device)
    t = time.perf_counter()
    pixels, has_image, _ = decode_images(ps.image_paths, bundle.model.image_size, threads=16)
    tokens = bundle.model.tokenize(ps.texts)
    decode_s = time.perf_counter() - t
    bundle.encode_products(pixels[:batch_size], has_image[:batch_size], tokens[:batch_size], batch_size)  # warm-up
    sync = torch.cuda.synchronize if bundle.device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    bundle.encode_products(pixels, has_image, tokens, batch_size)
    sync()
    host_batches = len(pixels) / (time.perf_counter() - t)
    resident = _resident_forward(bundle, pixels, has_image, tokens, batch_size, sync)
    ceiling = max(host_batches, resident)
    del pixels, has_image, tokens
    out = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
           "products": products.num_rows, "batch_size": batch_size, "decoding": decoding,
           "ceiling_products": len(ps.ids), "single_process_decode_tokenize_seconds": round(decode_s, 2),
           "forward_only_host_batches_products_per_s": round(host_batches, 1),
           "forward_only_gpu_resident_products_per_s": round(resident, 1),
           "forward_only_products_per_s": round(ceiling, 1), "pipelines": []}
    with tempfile.TemporaryDirectory() as tmp:
        catalogue = write_table(products, Path(tmp) / "products.parquet", PRODUCTS)  # one part
        for variant in variants or [{}]:
            for n in actors:
                acfg = cfg.assign.model_copy(update={"incremental": False, "batch_size": batch_size, "actors": n,
                                                     "gpus_per_actor": 1.0 / n,  # the actors share one GPU
                                                     **assign_overrides, **variant})
                counts = assign_products(catalogue, layout.dir("encoder"), Path(tmp), acfg, cfg.ray, None,
                                         Path(tmp) / "embeddings.parquet")
                # steady: first output batch's arrival to the last one's; incl_writes: to the end of the
                # driver's work on the last batch (here the one part's graph and embeddings, written at the end)
                steady, with_writes = counts["steady_products_per_s"], counts["steady_products_per_s_incl_consumer"]
                out["pipelines"].append({
                    "actors": n, "variant": variant, "gpu_decode": acfg.gpu_decode,
                    "decode_workers": acfg.decode_concurrency, "decode_batch_size": acfg.decode_batch_size,
                    "image_failures": counts["image_failures"],
                    "pipeline_steady_products_per_s": round(steady, 1),
                    "pipeline_vs_ceiling": round(steady / ceiling, 3),
                    "pipeline_steady_incl_writes_products_per_s": round(with_writes, 1),
                    "pipeline_incl_writes_vs_ceiling": round(with_writes / ceiling, 3),
                    "pipeline_seconds_total": counts["pipeline_seconds"],
                    "pipeline_first_batch_seconds": counts["first_batch_seconds"],
                    "pipeline_last_batch_seconds": counts["last_batch_seconds"],
                    "stage_seconds_incl_ray_start": counts["embed_seconds"]})
                print(json.dumps(out["pipelines"][-1]), file=sys.stderr, flush=True)  # a figure per pipeline as it ends
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["quality", "throughput", "sees"])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--labels", type=Path, default=None, help="Myntra folder (dev labels) for precision figures")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--actors", default="1", help="throughput: model actors, a comma list runs one pipeline each")
    ap.add_argument("--repeat", type=int, default=1, help="throughput: run over the catalogue this many times")
    ap.add_argument("--ceiling-products", type=int, default=200_000,
                    help="throughput: products the forward-only ceiling is timed on")
    ap.add_argument("--image-root", type=Path, default=None, help="sees: the photos are in this folder instead")
    ap.add_argument("--assign-set", action="append", default=[], metavar="FIELD=VALUE",
                    help="throughput: an assign setting for the pipeline, e.g. decode_concurrency=12")
    ap.add_argument("--variant", action="append", default=[], metavar="FIELD=VALUE[;FIELD=VALUE]",
                    help="throughput: one more series of pipelines with these assign settings (repeatable; "
                         "'' is the settings as they are)")
    ap.add_argument("--decode-sample", type=int, default=20_000, help="throughput: photos the decoding rates use")
    args = ap.parse_args()
    if args.mode == "sees":
        result = sees(args.run, args.labels, image_root=args.image_root)
    elif args.mode == "quality":
        result = quality(args.run, args.labels)
    else:
        overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.assign_set)}
        variants = [{k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in spec.split(";") if item)}
                    for spec in args.variant]
        result = throughput(args.run, args.batch_size, [int(a) for a in args.actors.split(",")], args.repeat, overrides,
                            args.ceiling_products, args.decode_sample, variants or None)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
