"""benchmarks/bench_scale.py: the back-of-envelope table is arithmetic on measured inputs, checked here."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_scale.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _manifest(path: Path, stages: dict[str, float], products: int | None) -> Path:
    entries = {name: {"seconds": s, "counts": {}} for name, s in stages.items()}
    if products is not None:
        entries.setdefault("ingest", {"seconds": 1.0, "counts": {}})["counts"] = {"products": products}
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"stages": entries}))
    return path / "manifest.json"


def test_rates_come_from_the_first_manifest_that_has_the_stage(bench, tmp_path) -> None:
    first = _manifest(tmp_path / "a", {"ingest": 10.0, "extract": 100.0}, products=1000)
    second = _manifest(tmp_path / "b", {"extract": 1.0, "train": 50.0}, products=500)
    rates = {r.stage: r for r in bench.core_rates([first, second], cores=2)}
    assert rates["ingest"].core_s_per_product == pytest.approx(10.0 * 2 / 1000)
    assert rates["extract"].core_s_per_product == pytest.approx(100.0 * 2 / 1000)  # not the second's 1.0 s
    assert rates["train"].core_s_per_product == pytest.approx(50.0 * 2 / 500)
    assert "b/manifest.json" in rates["train"].source


def test_table_scales_linearly_caps_training_and_adds_gpu_rows(bench, tmp_path) -> None:
    manifest = _manifest(tmp_path / "a", {"ingest": 36.0, "train": 36.0}, products=1000)  # 0.072 core-s/product
    rates = bench.core_rates([manifest], cores=1)
    args = argparse.Namespace(cluster_cores=100, cluster_gpus=10, core_hour_usd=1.0, gpu_hour_usd=10.0,
                              train_cap=None, cache_lookup_us=None, part_rows=10_000)
    lines = bench.table(rates, {}, args)
    row = next(line for line in lines if line.strip().startswith("1,000,000 |"))
    assert "|         20 |" in row  # 1M x 0.072 core-s = 20 core-hours, $20 at $1
    capped = bench.table(rates, {}, argparse.Namespace(**{**vars(args), "train_cap": 1000}))
    row = next(line for line in capped if line.strip().startswith("1,000,000 |"))
    assert "|         10 |" in row  # ingest only, training capped at 1,000 products: negligible
    gpu = bench.table(rates, {"train": (100.0, "test")}, args)
    assert any("10 GPUs (train)" in line for line in gpu)


def test_cache_lookup_term_grows_with_parts_times_products(bench, tmp_path) -> None:
    rates = bench.core_rates([_manifest(tmp_path / "a", {"ingest": 36.0}, products=1000)], cores=1)
    args = argparse.Namespace(cluster_cores=100, cluster_gpus=10, core_hour_usd=1.0, gpu_hour_usd=10.0,
                              train_cap=None, cache_lookup_us=1.0, part_rows=1_000_000)
    # 1M: 1 part x 1M rows x 1 us = 1 core-s; 100M: 100 parts x 100M rows x 1 us = 10,000 core-s
    assert bench.lookup_core_s(1_000_000, args) == pytest.approx(1.0)
    assert bench.lookup_core_s(100_000_000, args) == pytest.approx(10_000.0)
    lines = bench.table(rates, {"train": (100.0, "test")}, args)
    rows = [line for line in lines if line.strip().startswith("1,000,000,000 |")] + \
        [lines[lines.index(line) + 1] for line in lines if line.strip().startswith("1,000,000,000 |")]
    # 1B: 1,000 parts x 1B rows x 1 us = 1e6 core-s = 278 core-h, on CPUs in both plans (+ 10,000 of ingest)
    assert len(rows) == 2 and all("|     10,278 |" in row for row in rows)
    assert bench.lookup_core_s(1_000_000, argparse.Namespace(cache_lookup_us=None, part_rows=10)) == 0.0


def test_gpu_figures_are_parsed_from_results_and_flags(bench, tmp_path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("| assign on H100 | 12,900 products/s per GPU |\nunrelated 5 products/s\n")
    rates = bench.gpu_rates(results, ["train=503:H100 train stage"])
    assert rates["assign"][0] == 12900.0 and "RESULTS.md:1" in rates["assign"][1]
    assert rates["train"] == (503.0, "--gpu: H100 train stage")
    with pytest.raises(ValueError, match="STAGE=PRODUCTS_PER_S"):
        bench.gpu_rates(results, ["feeds=10"])
