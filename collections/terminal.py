"""A quiet terminal for ``pinlanding run``: the engines' own output goes to the run's log file.

Ray's C++ core worker writes its errors straight to file descriptor 2, and the Spark JVM (a child
process) inherits that descriptor, so neither passes through Python's ``sys.stderr``. Inside
:func:`quiet_terminal` descriptor 2 points at the log file, and ``sys.stderr`` at a copy of the terminal:
the stages' progress bars and summaries (tqdm, rich) still show, while what the engines write to the
descriptor lands in the log, as do Python log records and warnings. Hugging Face's weight-loading
progress bars are turned off.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from pinlanding.collections.artifacts import AnyPath, as_path, is_remote

LOG_NAME = "run.log"


def run_log(root: AnyPath) -> Path:
    """``RUN/run.log`` of a local run folder; for an object-store run folder, a local temporary file."""
    if is_remote(root):
        return Path(tempfile.gettempdir()) / f"pinlanding-{os.getpid()}.{LOG_NAME}"
    return Path(as_path(root)) / LOG_NAME


def _hf_bars(enabled: bool) -> bool:
    """Turn Hugging Face's progress bars on or off; return whether they were on. transformers reads the
    hub's setting when it is imported, and is told directly when it already is."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was = not are_progress_bars_disabled()
    (enable_progress_bars if enabled else disable_progress_bars)()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    return was


def _is_fd2(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is both
        return False


@contextmanager
def quiet_terminal(log_file: Path) -> Iterator[Path]:
    """Send descriptor 2, log records and warnings to ``log_file`` (appended) for the block; see the module."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    log = open(log_file, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
    log.write(f"--- {datetime.now(timezone.utc).isoformat(timespec='seconds')} pid {os.getpid()}: {' '.join(sys.argv)}\n")
    saved = os.dup(2)
    terminal = open(os.dup(saved), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                    errors="backslashreplace")
    stderr = sys.stderr
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    logging.captureWarnings(True)
    bars = _hf_bars(False)
    os.dup2(log.fileno(), 2)
    if _is_fd2(stderr):  # else Python's stderr is already elsewhere (a test runner's capture): left there
        sys.stderr = terminal
    try:
        yield log_file
    finally:
        terminal.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr = stderr
        terminal.close()
        logging.captureWarnings(False)
        root.removeHandler(handler)
        if bars:
            _hf_bars(True)
        log.close()
