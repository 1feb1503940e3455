"""The `pinlanding` command line: a thin layer that parses arguments and calls library functions."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

# OpenMP threads sleep rather than spin while they wait (set before torch loads; the user's setting wins). The
# math is unchanged; on a contended 2-core machine a training step took 2-6x longer with spinning threads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer
from rich.console import Console

from pinlanding.collections.artifacts import as_path
from pinlanding.collections.config import load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import STAGE_NAMES, Pipeline, get_stage
from pinlanding.collections.terminal import quiet_terminal, run_log

app = typer.Typer(help="pinlanding: content-first shopping collections.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console(stderr=True)

CatalogOpt = typer.Option(None, "--catalog", help="catalogue folder or file (Myntra layout, JSONL, CSV, Parquet)")
OutOpt = typer.Option(..., "--out", help="run folder, a local path or an fsspec URL such as s3://bucket/runs/x; "
                                        "rerunning on it reuses unchanged work")
ConfigOpt = typer.Option(None, "--config", help="YAML merged over conf/default.yaml")
SetOpt = typer.Option(None, "--set", help="override a config value, e.g. --set encoder.epochs=2 (repeatable)")


def _fail(exc: BaseException) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


def _run(stages: list[str] | None, catalog: Path | None, run_folder: str, config: Path | None,
         overrides: list[str] | None, force: bool) -> None:
    out = as_path(run_folder)
    try:
        cfg = load_config(config, overrides)
        pipe = Pipeline(cfg, RunLayout(out), catalog=catalog.resolve() if catalog else None, force=force)
        with quiet_terminal(run_log(out)) as log:  # Ray's and Spark's own lines go to the log, not the terminal
            manifest = pipe.run(stages)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
        return
    console.print(f"[bold green]done[/]: artifacts under {out}/, manifest {out}/manifest.json, engine logs {log}")
    site = out / "site" / "index.html"
    if site.exists():
        console.print(f"open {site} in a browser, or `pinlanding serve --run {out}` for the feed API")
    report = out / "report" / "index.html"
    if report.exists():
        console.print(f"report: {report}")
    _ = manifest


@app.command()
def run(catalog: Path = typer.Option(..., "--catalog", help="catalogue folder or file"), out: str = OutOpt,
        config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt,
        force: bool = typer.Option(False, help="rerun every stage even if unchanged")) -> None:
    """Run every stage, in order, writing artifacts and manifest.json under --out."""
    _run(None, catalog, out, config, set_, force)


@app.command()
def stage(name: str = typer.Argument(..., help=f"one of {', '.join(STAGE_NAMES)}"),
          catalog: Optional[Path] = CatalogOpt, out: str = OutOpt, config: Optional[Path] = ConfigOpt,
          set_: Optional[list[str]] = SetOpt, force: bool = typer.Option(False, help="rerun even if unchanged")) -> None:
    """Run one stage against a run folder (its inputs must exist there)."""
    try:
        get_stage(name)
    except ValueError as exc:
        _fail(exc)
    _run([name], catalog, out, config, set_, force)


@app.command()
def evaluate(run_dir: Path = typer.Option(..., "--run", help="a run folder"),
             labels: Path = typer.Option(..., "--labels", help="catalogue with ground-truth labels"),
             config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Measure a run against ground-truth labels: writes report/metrics.json and an HTML report."""
    from pinlanding.evaluation.evaluate import run_evaluate

    try:
        run_evaluate(load_config(config, set_), RunLayout(run_dir), labels)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)


@app.command()
def review(run_dir: Path = typer.Option(..., "--run", help="a run folder"),
           host: str = typer.Option("127.0.0.1", help="address to listen on"),
           port: int = typer.Option(8766, help="port to listen on"),
           token: Optional[str] = typer.Option(None, envvar="PINLANDING_REVIEW_TOKEN",
                                               help="required when listening beyond loopback")) -> None:
    """Serve the merchandisers' vocabulary review app."""
    from pinlanding.vocab.review import serve_review

    try:
        serve_review(RunLayout(run_dir), host=host, port=port, token=token)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)


@app.command()
def serve(run_dir: Path = typer.Option(..., "--run", help="a run folder"),
          host: Optional[str] = typer.Option(None, help="address to listen on (default: serve.host, 127.0.0.1)"),
          port: Optional[int] = typer.Option(None, help="port to listen on (default: serve.port, 8765)"),
          config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Serve the read-only feed API for the search team (query -> collection mapping, feeds, exports)."""
    from pydantic import ValidationError

    from pinlanding.feeds.api import serve_api
    from pinlanding.feeds.config import ServeConfig

    try:
        cfg = load_config(config, set_).serve
        flags = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
        serve_api(RunLayout(run_dir), ServeConfig.model_validate(cfg.model_dump() | flags) if flags else cfg)
    except ValidationError as exc:
        _fail(ValueError(f"invalid serve option: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}"))
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])
