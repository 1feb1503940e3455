"""The quiet terminal of `pinlanding run`: engine output to the run's log, the stages' own lines to the terminal."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

from huggingface_hub.utils import are_progress_bars_disabled

from pinlanding.collections.terminal import quiet_terminal, run_log


def test_engine_output_goes_to_the_log_and_stage_output_to_the_terminal(tmp_path, capfd) -> None:
    log = run_log(tmp_path / "run")
    assert log == tmp_path / "run" / "run.log"
    with quiet_terminal(log):
        os.write(2, b"core_worker.cc:2465: written by native code\n")  # Ray's C++ core worker
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('WARN NativeCodeLoader\\n')"], check=True)
        logging.getLogger("py4j").warning("a library's log record")
        print("> extract: 3 parts", file=sys.stderr)  # the stages' lines and progress bars
        assert are_progress_bars_disabled()
    terminal, text = capfd.readouterr().err, log.read_text()
    assert "> extract: 3 parts" in terminal and "> extract" not in text
    for line in ("written by native code", "WARN NativeCodeLoader", "a library's log record"):
        assert line in text and line not in terminal
    os.write(2, b"after the run\n")
    assert "after the run" in capfd.readouterr().err and not are_progress_bars_disabled()


def test_the_command_line_lets_waiting_openmp_threads_sleep() -> None:
    probe = "import os, pinlanding.collections.cli; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", probe], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"  # an explicit setting wins
