"""``pinlanding evaluate``: measure a run against ground-truth labels and the search-log baseline.

Writes ``RUN/report/metrics.json``, ``mapping.json`` (how every vocabulary value met the labels),
``collections.jsonl`` (one judged collection per line) and ``evaluation.html``, and prints the
headline figures. PinLanding's published figures are carried along for comparison. The figures are
:func:`pinlanding.evaluation.measure.measure`; the files and tables, :mod:`pinlanding.evaluation.present`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout, resolve_data_path
from pinlanding.collections.queries import read_queries
from pinlanding.evaluation.labels import read_labels
from pinlanding.evaluation.measure import measure
from pinlanding.evaluation.present import print_metrics, render_html, write_outputs
from pinlanding.evaluation.report import load_artifacts


def run_evaluate(cfg: PipelineConfig, layout: RunLayout, labels_path: str | Path) -> dict[str, Any]:
    """Read the run, the labels and the search log; measure; write, render and print the metrics."""
    start = time.perf_counter()
    ecfg = cfg.evaluation
    tables, notes = load_artifacts(layout)
    if tables["products"] is None:
        raise FileNotFoundError(f"{layout.products} is missing; run the pipeline on {layout.root} first")
    if tables["feeds"] is None and tables["assignments"] is None:
        raise FileNotFoundError(f"{layout.root} has neither feeds nor assignments to evaluate; run the pipeline first")
    labels = read_labels(labels_path)
    qpath = resolve_data_path(ecfg.queries)
    queries = read_queries(qpath, ecfg.query_column)[0] if qpath.exists() else []
    ev = measure(tables, labels, queries, ecfg, cfg.feeds.min_feed_size, cfg.feeds.min_confidence)
    m = ev.metrics
    m.update(run=str(layout.root), labels=str(labels_path), inputs=notes, seconds=round(time.perf_counter() - start, 2))
    out = layout.dir("report")
    write_outputs(ev, out, render_html(ev, tables["products"], ecfg.sample_collections))
    print_metrics(m, Console())
    Console(stderr=True).print(f"metrics: {out / 'metrics.json'}  report: {out / 'evaluation.html'}  "
                               f"({m['seconds']} s)")
    return m
