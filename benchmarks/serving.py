"""Serving helpers of the API tests and benchmarks: run the app in a thread, wait for its search."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import httpx
from fastapi import FastAPI


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yield its base URL; stop it on exit."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for_search(base_url: str, timeout: float = 600.0) -> str:
    """Poll ``/health`` until query matching is no longer warming up; return its state."""
    deadline = time.monotonic() + timeout
    while True:
        state = httpx.get(f"{base_url}/health", timeout=30).json()["search"]
        if state != "warming" or time.monotonic() > deadline:
            return state
        time.sleep(0.05)
