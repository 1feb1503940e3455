"""Feeds benchmark: stage times, pruned vs naive Spark scoring, and an API load test.

  real       the real dev catalogue: feeds + site stage wall times (budgets 3 min / 1 min), topics, products
             per topic, scoring with pruning vs the naive cross join (candidate pairs and seconds)
  generated  a catalogue generated in Spark (default 1,000,000 products x 20,000 topics): pruned scoring
             measured; the naive cross join timed on a sample of topics and extrapolated by pair count
  api        concurrent clients on loopback against `serve` over RUN's feeds (or the `real` run's):
             latency percentiles, errors

Topics and assignments come from RUN (default runs/dev) when the upstream stages have written them there;
otherwise they are derived from the real titles (benchmarks/standins.py) and the output says so.

Usage: python benchmarks/bench_feeds.py [real|generated|api|all] [--run RUN] [--products N] [--topics N]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import standins as synthetic
from pyspark.sql import functions as F

from pinlanding.collections.artifacts import read_table, write_table
from pinlanding.collections.config import PipelineConfig, SparkConfig
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.collections.schemas import ASSIGNMENTS, FEEDS, PRODUCTS, TOPICS
from pinlanding.feeds import scoring
from pinlanding.feeds.config import FeedsConfig

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ROOT / ".." / "shared" / "datasets" / "search-queries" / "fashion12k_queries.tsv"
warnings.filterwarnings("ignore", message=".*pandas >= 3.0.0.*")


def timed(df) -> float:
    """Seconds to compute ``df`` fully (written to Spark's no-op sink)."""
    start = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start


def copy(src: Path, dst: Path) -> None:
    """Copy one artifact: a file, or a part folder."""
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy(src, dst)


def prepare_run(source: Path, work: Path) -> tuple[RunLayout, str]:
    """A run folder with the source's catalogue plus its topics/assignments (or ones derived from titles)."""
    src, layout = RunLayout(source), RunLayout(work)
    copy(src.products, layout.products)
    if src.topics.exists() and src.assignments.exists():
        copy(src.topics, layout.topics)
        copy(src.assignments, layout.assignments)
        return layout, f"upstream topics/assignments from {source}"
    assignments = synthetic.title_assignments(read_table(layout.products, PRODUCTS))
    write_table(assignments, layout.assignments, ASSIGNMENTS)
    write_table(synthetic.title_topics(assignments), layout.topics, TOPICS)
    return layout, "topics/assignments DERIVED FROM TITLES (upstream stages not in RUN yet)"


def compare(spark, topic_rows, assignments, n_topics: int, n_products: int, naive_topics: int | None = None) -> None:
    """Print candidate pairs and seconds of pruned vs naive strict scoring (naive sampled when asked)."""
    weights = scoring.ScoreWeights()
    start = time.perf_counter()
    products = scoring.product_attributes(assignments).cache()
    products.count()
    tattrs = scoring.topic_attributes(topic_rows, weights).cache()
    tattrs.count()
    print(f"  shared prep (product attribute arrays, topic attributes; cached): {time.perf_counter() - start:.1f} s")
    bound = scoring.probe_attributes(tattrs, products).agg({"freq": "sum"}).collect()[0][0] or 0
    seconds = timed(scoring.rank(scoring.score(scoring.candidates_pruned(tattrs, products), weights), 200))
    print(f"  pruned (join on key,value + rarest-attribute probe): {bound:,} candidate pairs "
          f"(sum of probe frequencies; exact for strict matching), {seconds:.1f} s")
    naive_pairs = n_topics * n_products
    if naive_topics is None or naive_topics >= n_topics:
        seconds = timed(scoring.rank(scoring.score(scoring.candidates_naive(tattrs, products), weights), 200))
        print(f"  naive cross join: {naive_pairs:,} pairs, {seconds:.1f} s (measured)")
        return
    sample = tattrs.where(tattrs.topic_id.isin(
        [r.topic_id for r in tattrs.select("topic_id").distinct().orderBy("topic_id").limit(naive_topics).collect()]))
    seconds = timed(scoring.rank(scoring.score(scoring.candidates_naive(sample, products), weights), 200))
    estimate = seconds * n_topics / naive_topics
    print(f"  naive cross join: {naive_pairs:,} pairs; measured {naive_topics} topics x {n_products:,} products "
          f"= {naive_topics * n_products:,} pairs in {seconds:.1f} s -> ESTIMATED {estimate:,.0f} s "
          f"({estimate / 3600:.1f} h) for all, extrapolated linearly in pairs")


def top_k(topic_rows, assignments, k: int, prefix: int) -> tuple[scoring.TopK, float]:
    """Strict top-``k`` with the threshold bound, timed from cached assignments to ranked rows; verdicts printed."""
    weights = scoring.ScoreWeights()
    start = time.perf_counter()
    tattrs = scoring.topic_attributes(topic_rows, weights).cache()
    top = scoring.strict_top_k(tattrs, assignments, weights, k, prefix)
    timed(top.ranked)
    seconds = time.perf_counter() - start
    verdicts = {r.verdict: (r.topics, r.pairs) for r in top.verdicts.groupBy("verdict").agg(
        F.count(F.lit(1)).alias("topics"), F.sum("pairs").alias("pairs")).collect()}
    pairs = sum(p for _, p in verdicts.values())
    print(f"  top-K pruned (K={k}; prefix: the first K and near-ties where the probe holds all attributes, else the "
          f"first {prefix}): {seconds:.1f} s from cached assignments to ranked rows "
          f"(Spark start excluded); {pairs:,} candidate pairs scored; topics "
          + ", ".join(f"{v}: {n:,} ({p:,} pairs)" for v, (n, p) in sorted(verdicts.items())))
    return top, seconds


def check_exact(topic_rows, assignments, k: int, prefix: int, reference: str) -> bool:
    """Compare top-K pruned feeds with the reference's (``cross``: the naive cross join; ``join``: every
    rarest-attribute candidate scored, itself tested equal to it), rank, product and score included."""
    weights = scoring.ScoreWeights()
    top, _ = top_k(topic_rows, assignments, k, prefix)
    tattrs = scoring.topic_attributes(topic_rows, weights)
    build = scoring.candidates_naive if reference == "cross" else scoring.candidates_pruned
    start = time.perf_counter()
    ref = scoring.rank(scoring.score(build(tattrs, scoring.product_attributes(assignments)), weights), k).cache()
    cols = ["topic_id", "rank", "product_id", "score", "overlap"]
    n_ref = ref.count()
    missing, extra = ref.select(cols).exceptAll(top.ranked.select(cols)).count(), \
        top.ranked.select(cols).exceptAll(ref.select(cols)).count()
    same = missing == 0 and extra == 0
    print(f"  exactness vs {reference} reference ({time.perf_counter() - start:.1f} s): {n_ref:,} ranked rows, "
          f"{missing} missing, {extra} extra -> {'IDENTICAL' if same else 'DIFFERENT'}")
    return same


def bench_real(source: Path, work: Path) -> RunLayout:
    from pinlanding.collections.engines import spark_session
    from pinlanding.feeds.build import read_parquet, run_feeds
    from pinlanding.feeds.site import run_site

    layout, origin = prepare_run(source, work)
    cfg = PipelineConfig()
    topics = read_table(layout.topics, TOPICS)
    print(f"real catalogue ({origin}); spark {cfg.spark.master} on {os.cpu_count()} cores")
    for name, fn, budget in (("feeds", run_feeds, 180), ("site", run_site, 60), ("site again", run_site, 60)):
        start = time.perf_counter()
        counts = call_stage(fn, cfg, layout)
        seconds = time.perf_counter() - start
        print(f"  {name} stage: {seconds:.1f} s wall (budget {budget} s) {counts}")
    feeds = read_table(layout.feeds, FEEDS)
    sizes = sorted(feeds["size"].to_pylist())
    if sizes:
        print(f"  topics in: {topics.num_rows}, feeds: {len(sizes)}, products per feed: median "
              f"{statistics.median(sizes):.0f}, mean {statistics.mean(sizes):.1f}, min {sizes[0]}, max {sizes[-1]}")
    spark = spark_session(cfg.spark)
    assignments = scoring.clean_assignments(read_parquet(spark, layout.assignments)).cache()
    n_products = assignments.select("product_id").distinct().count()
    rows = [(t["topic_id"], a["key"], a["value"]) for t in topics.to_pylist() if t["status"] == "kept"
            for a in t["attributes"] or []]
    topic_rows = spark.createDataFrame(rows, "topic_id string, key string, value string")
    n_topics = topic_rows.select("topic_id").distinct().count()
    print(f"  scoring {n_topics:,} topics x {n_products:,} products (strict):")
    compare(spark, topic_rows, assignments, n_topics, n_products)
    spark.catalog.clearCache()
    return layout


def generated(spark, n_products: int, n_topics: int):
    """Generated (assignments cached, topic rows cached), printed with their size and generation time."""
    start = time.perf_counter()
    assignments, topic_rows = synthetic.generated_frames(spark, n_products, n_topics)
    assignments, topic_rows = assignments.cache(), topic_rows.cache()
    rows = assignments.count()
    topic_rows.count()
    print(f"generated catalogue: {n_products:,} products ({rows:,} assignments), {n_topics:,} topics; "
          f"generated in {time.perf_counter() - start:.1f} s")
    return assignments, topic_rows


def bench_generated(n_products: int, n_topics: int, naive_topics: int, ks: list[int], sample: tuple[int, int],
                    reference: str, full: bool) -> None:
    """Top-K pruned scoring on a generated catalogue for each K, exactness on a smaller sample (and, with
    ``full``, the old every-candidate scoring and the naive estimate on the big one)."""
    from pinlanding.collections.engines import spark_session

    spark = spark_session(SparkConfig(shuffle_partitions=16, driver_memory="6g"))
    cfg = FeedsConfig()
    print(f"feeds stage K = max(candidate_pool, max_products) = {cfg.pool_size}, topk_prefix {cfg.topk_prefix}; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    if sample[0] and sample[1]:
        assignments, topic_rows = generated(spark, *sample)
        for k in ks:
            check_exact(topic_rows, assignments, k, cfg.topk_prefix * k, reference)
        spark.catalog.clearCache()
    assignments, topic_rows = generated(spark, n_products, n_topics)
    for k in ks:
        top_k(topic_rows, assignments, k, cfg.topk_prefix * k)
        print(f"    load average after: {os.getloadavg()[0]:.1f}")
        spark.catalog.clearCache()
        assignments.cache().count()
        topic_rows.cache().count()
    if full:
        compare(spark, topic_rows, assignments, n_topics, n_products, naive_topics)
    spark.catalog.clearCache()


async def _load(base: str, paths: list[str], concurrency: int) -> tuple[dict[str, list[float]], int, dict[int, int]]:
    import httpx

    latencies: dict[str, list[float]] = {}
    statuses: dict[int, int] = {}
    queue = list(paths)

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            path = queue.pop()
            start = time.perf_counter()
            r = await http.get(base + path)
            route = path.split("?")[0].split("/")[1] + ("/feed" if path.split("?")[0].endswith("/feed") else "")
            latencies.setdefault(route, []).append(time.perf_counter() - start)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return latencies, sum(v for k, v in statuses.items() if k >= 400), statuses


def bench_api(layout: RunLayout, requests: int = 2000, concurrency: int = 16) -> None:
    from urllib.parse import quote

    from serving import serve_in_thread, wait_for_search

    from pinlanding.collections.config import load_config
    from pinlanding.feeds.api import create_app
    from pinlanding.feeds.build import read_feeds

    feeds = read_feeds(layout)
    if not feeds:
        print("api: no feeds to serve")
        return
    queries = [line.split("\t")[1] for line in QUERIES.read_text(encoding="utf-8", errors="replace").splitlines()[:2000]
               if line.count("\t") >= 1] if QUERIES.exists() else ["red dress"]
    rng = random.Random(0)
    paths = []
    for i in range(requests):
        f = rng.choice(feeds)
        paths.append([f"/topics?q={quote(f['title'][:4])}&limit=20", f"/topics/{quote(f['slug'])}/feed?offset=0&limit=50",
                      f"/search?q={quote(rng.choice(queries)[:200])}&k=10", "/health"][i % 4])
    start = time.perf_counter()
    app = create_app(layout, load_config().serve)
    with serve_in_thread(app) as base:
        print(f"api: serving in {time.perf_counter() - start:.1f} s ({len(feeds)} collections)")
        state = wait_for_search(base)
        print(f"api: search {state} after {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        latencies, errors, statuses = asyncio.run(_load(base, paths, concurrency))
        wall = time.perf_counter() - start
    every = [x for xs in latencies.values() for x in xs]

    def pct(xs: list[float]) -> str:
        q = statistics.quantiles(sorted(xs), n=100)
        return f"p50 {q[49] * 1e3:.1f}, p95 {q[94] * 1e3:.1f}, p99 {q[98] * 1e3:.1f}, max {max(xs) * 1e3:.1f}"

    print(f"api load test: {len(every)} requests, {concurrency} concurrent clients on loopback, {wall:.1f} s "
          f"({len(every) / wall:.0f} req/s); latency ms {pct(every)}; errors {errors}; statuses {statuses}")
    for route, xs in sorted(latencies.items()):
        print(f"  /{route}: {len(xs)} requests, latency ms {pct(xs)}")
    if errors:
        raise SystemExit(f"api load test had {errors} error responses")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="?", default="all", choices=["real", "generated", "api", "all"])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "dev")
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--topics", type=int, default=20_000)
    parser.add_argument("--naive-topics", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--k", type=int, nargs="*", help="top-K sizes to time (default: the feeds stage's K)")
    parser.add_argument("--sample", type=int, nargs=2, default=[100_000, 5_000], metavar=("PRODUCTS", "TOPICS"),
                        help="generated catalogue on which top-K pruned feeds are compared with the reference (0 0: skip)")
    parser.add_argument("--reference", choices=["join", "cross"], default="join",
                        help="exactness reference: every rarest-attribute candidate scored, or the naive cross join")
    parser.add_argument("--full", action="store_true", help="also time every-candidate scoring and the naive estimate")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="bench-feeds-") as tmp:
        layout = None
        if args.what == "api" and RunLayout(args.run).feeds.exists():
            layout = RunLayout(args.run)  # serve the run's own published feeds
        elif args.what in ("real", "api", "all"):
            if not RunLayout(args.run).products.exists():
                raise SystemExit(f"no catalogue at {args.run}/catalog; run `pinlanding stage ingest` first")
            layout = bench_real(args.run, Path(tmp))
        if args.what in ("generated", "all"):
            ks = args.k or [FeedsConfig().pool_size]
            bench_generated(args.products, args.topics, args.naive_topics, ks, tuple(args.sample), args.reference,
                            args.full)
        if args.what in ("api", "all") and layout is not None:
            bench_api(layout, args.requests)


if __name__ == "__main__":
    main()
