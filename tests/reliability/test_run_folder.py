"""The run folder (issue 20, defects 3, 6, 9 and 10): every input fingerprinted by content, one run at a
time, Spark scratch kept inside the run, generated files readable by other users."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pytest

from pinlanding.collections.artifacts import write_json, write_table, write_text
from pinlanding.collections.config import load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import STAGES, Pipeline
from pinlanding.vocab.decisions import Decision, DecisionStore


def test_files_read_from_outside_the_run_are_fingerprinted_by_content(tmp_path: Path) -> None:
    queries, decisions, eval_queries = tmp_path / "q.tsv", tmp_path / "d.jsonl", tmp_path / "e.tsv"
    queries.write_text("English query\nred dress\nblue shirt\n")
    decisions.write_text("")
    eval_queries.write_text("English query\nred dress\n")
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("")
    cfg = load_config(overrides=[f"vocab.judge.queries={queries}", f"vocab.decisions_path={decisions}",
                                 f"evaluation.queries={eval_queries}"])
    pipe = Pipeline(cfg, RunLayout(tmp_path / "run"), catalog=catalog)

    def rerun_after(edit: Callable[[], object]) -> set[str]:
        """The stages whose fingerprint (hence whether the next run reruns them) ``edit`` changes."""
        before = {stage.name: pipe.fingerprint(stage) for stage in STAGES}
        edit()
        return {stage.name for stage in STAGES if pipe.fingerprint(stage) != before[stage.name]}

    # the query log shrank: same path, same settings
    assert rerun_after(lambda: queries.write_text("English query\nred dress\n")) == {"vocab", "topics"}
    reject = Decision(action="reject", who="m", key="color", value="red")
    assert rerun_after(lambda: DecisionStore(decisions).append(reject)) == {
        "vocab", "topics", "feeds"}  # feeds follows renamed and dropped values to their collections
    assert rerun_after(lambda: eval_queries.write_text("English query\nblue shirt\n")) == {"report"}


_HOLDER = textwrap.dedent("""
    import sys, time
    from pinlanding.collections.pipeline import RunLock
    with RunLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_second_run_on_the_same_folder_is_refused_naming_the_holder(tmp_path: Path, tiny_catalog: Path) -> None:
    from pinlanding.collections.pipeline import RunLocked

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=rf"pid {holder.pid} on .+, started 20"):
            Pipeline(load_config(), RunLayout(out), catalog=tiny_catalog).run(["ingest"])
        assert not (out / "catalog").exists()  # refused before any stage ran
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing anything: its lock (file still naming it) is taken over
    assert str(holder.pid) in (out / ".lock").read_text()
    manifest = Pipeline(load_config(), RunLayout(out), catalog=tiny_catalog).run(["ingest"])
    assert manifest["stages"]["ingest"]["counts"]["products"] == 6


def test_spark_scratch_lives_in_the_run_and_a_killed_jvms_leftovers_are_removed(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pinlanding.collections.pipeline import spark_scratch

    monkeypatch.delenv("SPARK_LOCAL_DIRS", raising=False)
    monkeypatch.setenv("SPARK_SUBMIT_OPTS", "-Xss4m -Djava.io.tmpdir=/elsewhere")
    monkeypatch.delitem(sys.modules, "pyspark", raising=False)  # no session of this process is running
    leftover = tmp_path / "run" / ".spark-tmp" / "spark-0a1b" / "blockmgr-1"
    leftover.mkdir(parents=True)
    spark_scratch(tmp_path / "run", load_config())
    assert not leftover.parent.exists()
    scratch = (tmp_path / "run" / ".spark-tmp").resolve()
    assert os.environ["SPARK_LOCAL_DIRS"] == str(scratch)
    assert os.environ["SPARK_SUBMIT_OPTS"] == f"-Xss4m -Djava.io.tmpdir={scratch}"


def test_a_killed_ingests_scratch_is_removed_by_the_next_run(tmp_path: Path, tiny_catalog: Path) -> None:
    out = tmp_path / "run"
    leftover = out / ".ingest-tmp" / "pinlanding-ids-dead" / "ids.sqlite"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"left by a killed run")
    Pipeline(load_config(), RunLayout(out), catalog=tiny_catalog).run(["ingest"])
    assert not leftover.parent.exists() and not list((out / ".ingest-tmp").iterdir())


def test_generated_files_are_readable_by_other_users(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        files = [write_text(tmp_path / "site" / "index.html", "<p>hi</p>"), write_json(tmp_path / "a.json", {}),
                 write_table(pa.table({"x": [1]}), tmp_path / "t.parquet", pa.schema([("x", pa.int64())]))]
    finally:
        os.umask(old)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE((tmp_path / "site").stat().st_mode) == 0o755
