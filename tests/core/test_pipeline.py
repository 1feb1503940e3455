"""Run orchestration: manifest, reuse of unchanged work, resume after a crash, the CLI."""
from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from testlib import make_image
from typer.testing import CliRunner

from pinlanding.collections import ingest as ingest_module
from pinlanding.collections import pipeline as pipeline_module
from pinlanding.collections.artifacts import read_table
from pinlanding.collections.parts import is_parted
from pinlanding.collections.schemas import PRODUCTS
from pinlanding.collections.cli import app
from pinlanding.collections.config import load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import Pipeline, Stage, get_stage

import core._stages as fake  # noqa: E402  (tests/ is on the test path)

STAGES = (get_stage("ingest"), Stage("ids", "core._stages:ids_stage"))


def _pipeline(catalog: Path, out: Path, **kw) -> Pipeline:
    return Pipeline(load_config(), RunLayout(out), catalog=catalog, stages=STAGES, **kw)


def test_manifest_and_reuse_of_unchanged_stages(tiny_catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fake.CALLS.clear()
    manifest = _pipeline(tiny_catalog, out).run()
    entry = manifest["stages"]["ingest"]
    assert entry["counts"]["products"] == 6 and entry["seconds"] >= 0
    assert manifest["stages"]["ids"]["counts"] == {"ids": 6}
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["package_version"] and on_disk["inputs"]["catalog_digest"]
    assert on_disk["config"]["catalog"]["currency"] == "INR"
    written = yaml.safe_load((out / "config.yaml").read_text())  # every value used, presets resolved
    enc = load_config().encoder
    assert enc.epochs is None and written["encoder"]["epochs"] == enc.resolved("epochs") is not None
    assert all(written["encoder"][k] == enc.resolved(k) or list(written["encoder"][k]) == list(enc.resolved(k))
               for k in enc.resolved_dict())

    _pipeline(tiny_catalog, out).run()  # ingest reruns (cheap) with identical output: ids is reused
    assert fake.CALLS == ["ids"]
    _pipeline(tiny_catalog, out, force=True).run()
    assert fake.CALLS == ["ids", "ids"]


def test_changed_input_config_or_damaged_output_reruns_downstream(tiny_catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fake.CALLS.clear()
    _pipeline(tiny_catalog, out).run()
    (out / "report" / "ids.txt").write_text("damaged")
    _pipeline(tiny_catalog, out).run()
    assert fake.CALLS == ["ids", "ids"] and (out / "report" / "ids.txt").read_text().startswith("p0")
    before = json.loads((out / "manifest.json").read_text())["stages"]["ingest"]["outputs"]
    make_image(tiny_catalog.parent / "images" / "0.jpg", color=(9, 9, 9))  # changed input image
    manifest = _pipeline(tiny_catalog, out).run()
    assert manifest["stages"]["ingest"]["outputs"] != before and fake.CALLS == ["ids"] * 3
    Pipeline(load_config(overrides=["evaluation.k=5"]), RunLayout(out), catalog=tiny_catalog, stages=STAGES).run()
    assert fake.CALLS == ["ids"] * 4


def test_a_cluster_run_connects_to_ray_once_for_all_its_stages(tiny_catalog: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    @contextmanager
    def session(cfg):
        fake.CALLS.append(f"connect {cfg.address}")
        yield
        fake.CALLS.append("disconnect")

    monkeypatch.setattr(pipeline_module, "ray_session", session)
    fake.CALLS.clear()
    _pipeline(tiny_catalog, tmp_path / "local").run()
    assert fake.CALLS == ["ids"]  # no cluster: no Ray for stages that do not ask for it
    fake.CALLS.clear()
    cfg = load_config(overrides=["ray.address=head:6379"])
    Pipeline(cfg, RunLayout(tmp_path / "cluster"), catalog=tiny_catalog, stages=STAGES).run()
    assert fake.CALLS == ["connect head:6379", "ids", "disconnect"]


def test_a_crash_halfway_leaves_no_partial_state_and_resumes(tiny_catalog: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(ingest_module, "commit_parts", crash)  # after the parts, before their listing
    with pytest.raises(RuntimeError):
        _pipeline(tiny_catalog, out).run(["ingest"])
    assert not (out / "manifest.json").exists()  # a crash in the first stage of a new run records nothing
    assert not is_parted(out / "catalog" / "products.parquet")  # written parts, but no committed artifact
    with pytest.raises(FileNotFoundError, match="unfinished write"):
        read_table(out / "catalog" / "products.parquet", PRODUCTS)
    monkeypatch.undo()
    manifest = _pipeline(tiny_catalog, out).run(["ingest"])
    assert manifest["stages"]["ingest"]["counts"]["products"] == 6


def test_run_folder_on_an_fsspec_url_reuses_changed_work_only_and_resumes(tiny_catalog: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from upath import UPath

    url = f"memory://runs/{uuid.uuid4().hex}"  # fsspec's in-memory filesystem: remote code paths, no server
    fake.CALLS.clear()

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(ingest_module, "commit_parts", crash)
    with pytest.raises(RuntimeError):
        _pipeline(tiny_catalog, url).run()
    assert not is_parted(UPath(url, "catalog", "products.parquet"))
    monkeypatch.undo()
    manifest = _pipeline(tiny_catalog, url).run()
    assert manifest["stages"]["ids"]["counts"] == {"ids": 6} and fake.CALLS == ["ids"]
    assert json.loads(UPath(url, "manifest.json").read_text())["stages"]["ids"]["counts"] == {"ids": 6}
    _pipeline(tiny_catalog, url).run()
    assert fake.CALLS == ["ids"]  # unchanged: reused
    UPath(url, "report", "ids.txt").write_text("damaged")
    _pipeline(tiny_catalog, url).run()
    assert fake.CALLS == ["ids", "ids"] and UPath(url, "report", "ids.txt").read_text().startswith("p0")


def test_unknown_stage_lists_choices() -> None:
    with pytest.raises(ValueError, match="unknown stage 'nope'; known: \\['ingest'"):
        get_stage("nope")


def test_cli_stage_and_errors(tiny_catalog: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["stage", "ingest", "--catalog", str(tiny_catalog), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "catalog" / "products.parquet").exists()
    result = runner.invoke(app, ["stage", "nope", "--out", str(out)])
    assert result.exit_code == 2 and "unknown stage 'nope'" in result.output
    result = runner.invoke(app, ["stage", "ingest", "--catalog", str(tmp_path / "missing"), "--out", str(out)])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["run", "--catalog", str(tiny_catalog), "--out", str(out), "--set", "spark.nope=1"])
    assert result.exit_code == 2 and "nope" in result.output
    assert runner.invoke(app, ["run", "--help"]).exit_code == 0
    url = f"memory://runs/{uuid.uuid4().hex}"
    result = runner.invoke(app, ["stage", "ingest", "--catalog", str(tiny_catalog), "--out", url])
    assert result.exit_code == 0, result.output
    assert (RunLayout(url).products.exists() and f"{url}/manifest.json" in result.output)


def test_all_records_quarantined_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"product_id": "1", "title": ""}\n')
    with pytest.raises(ValueError, match="no valid product"):
        _pipeline(bad, tmp_path / "run").run(["ingest"])


def test_changing_a_stage_packages_code_changes_its_fingerprint(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "stagepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "work.py").write_text("def run(ctx):\n    return {}\n")
    (pkg / "templates").mkdir()
    (pkg / "templates" / "page.html").write_text("<p>one</p>")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = pipeline_module.code_digest.__wrapped__("stagepkg.work:run")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "work.cpython-311.pyc").write_bytes(b"compiled")  # not source: no change
    assert pipeline_module.code_digest.__wrapped__("stagepkg.work:run") == before
    (pkg / "templates" / "page.html").write_text("<p>two</p>")
    assert pipeline_module.code_digest.__wrapped__("stagepkg.work:run") != before


def test_an_unknown_stage_is_an_error_not_a_skip(tiny_catalog: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown stages \['nope'\]; known: \['ingest'"):
        _pipeline(tiny_catalog, tmp_path / "run").run(["ingest", "nope"])
    assert not (tmp_path / "run" / "manifest.json").exists()


def _fingerprints(out: Path, names: tuple[str, ...], *overrides: str) -> dict[str, str]:
    """The named stages' fingerprints on ``out`` under the default config with ``overrides``."""
    pipeline = Pipeline(load_config(overrides=list(overrides)), RunLayout(out))
    return {name: pipeline.fingerprint(get_stage(name)) for name in names}


def test_a_topics_setting_reruns_topics_not_vocab(tmp_path: Path) -> None:
    names = ("vocab", "topics")
    base, changed = _fingerprints(tmp_path, names), _fingerprints(tmp_path, names, "topics.min_support=20")
    assert changed["vocab"] == base["vocab"] and changed["topics"] != base["topics"]
    judged = _fingerprints(tmp_path, names, "vocab.judge.keep_threshold=0.9")
    assert judged["topics"] != base["topics"]  # topics judges with it
    with pytest.raises(ValidationError, match=r"vocab\.topics\s+Extra inputs are not permitted"):
        load_config(overrides=["vocab.topics.min_support=20"])


def test_editing_an_external_file_reruns_exactly_the_stages_that_declare_it(tiny_catalog: Path, tmp_path: Path) -> None:
    log = tmp_path / "queries.tsv"
    log.write_text("English query\nred dress\n")
    cfg = load_config(overrides=[f"evaluation.queries={log}"])
    stages = (*STAGES, Stage("queries", "core._stages:queries_stage"))
    fake.CALLS.clear()
    Pipeline(cfg, RunLayout(tmp_path / "run"), catalog=tiny_catalog, stages=stages).run()
    assert fake.CALLS == ["ids", "queries"]
    Pipeline(cfg, RunLayout(tmp_path / "run"), catalog=tiny_catalog, stages=stages).run()
    assert fake.CALLS == ["ids", "queries"]  # nothing changed: both reused
    log.write_text("English query\nblue shirt\n")  # same path, same settings, new content
    manifest = Pipeline(cfg, RunLayout(tmp_path / "run"), catalog=tiny_catalog, stages=stages).run()
    assert fake.CALLS == ["ids", "queries", "queries"]
    assert (tmp_path / "run" / "topics" / "queries.txt").read_text().endswith("blue shirt\n")
    assert manifest["stages"]["queries"]["counts"] == {"bytes": log.stat().st_size}


def test_a_stage_reads_only_the_folders_its_inputs_type_declares(tiny_catalog: Path, tmp_path: Path) -> None:
    stages = (*STAGES[:1], Stage("undeclared", "core._stages:undeclared_stage"))
    with pytest.raises(ValueError, match=r"'topics' is not among this stage's folders \['catalog', 'report'\]"):
        Pipeline(load_config(), RunLayout(tmp_path / "run"), catalog=tiny_catalog, stages=stages).run()
    assert get_stage("vocab").inputs == ("catalog", "attributes", "review")  # from VocabInputs' fields
    assert get_stage("vocab").outputs == ("vocabulary",)


def test_a_runtime_section_is_given_to_the_stage_but_not_fingerprinted(tmp_path: Path) -> None:
    names = ("extract", "vocab")
    base, more_cpus = _fingerprints(tmp_path, names), _fingerprints(tmp_path, names, "ray.num_cpus=3")
    assert more_cpus["vocab"] == base["vocab"] and more_cpus["extract"] != base["extract"]
    assert get_stage("vocab").sections == ("vocab",) and get_stage("extract").sections == ("extract", "ray")
    assert "ray_cfg" in get_stage("vocab").signature.sections  # vocab still receives the Ray settings
