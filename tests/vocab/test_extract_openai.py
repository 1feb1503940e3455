"""The openai backend against a real local HTTP server speaking the chat completions API.

The server answers by what the product title asks for: good JSON, fenced JSON, broken JSON, the wrong
JSON type, nothing, a broken envelope, a slow answer (past the client timeout), a 503 then success,
a 429 with Retry-After then success, or a 400. It counts requests, when each arrived, and the most
requests in flight at once.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest
from extract_fixtures import product_image, products, write_products

from pinlanding.collections.config import load_config
from pinlanding.collections.pipeline import call_stage
from pinlanding.vocab.extract import run_extract
from pinlanding.vocab.extractors.model import OpenAIExtractor
from pinlanding.vocab.extractors.prepare import prepare_batch

GOOD = {"category": "t-shirt", "color": ["Red"], "pattern": "striped"}


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)
        self.active = 0
        self.max_active = 0
        self.bodies: list[dict] = []
        self.delay = 0.0

    def handle_error(self, request, client_address) -> None:  # clients that timed out hang up: expected
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, payload: dict | str, headers: dict[str, str] | None = None) -> None:
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][1]["content"]
        text = text if isinstance(text, str) else text[-1]["text"]
        case = text.split("Title: ")[1].split()[0]
        srv = self.server
        with srv.lock:
            srv.requests[case] += 1
            srv.arrivals[case].append(time.monotonic())
            srv.bodies.append(body)
            srv.active += 1
            srv.max_active = max(srv.max_active, srv.active)
            nth = srv.requests[case]
        try:
            time.sleep(srv.delay)
            self._answer(case, nth)
        finally:
            with srv.lock:
                srv.active -= 1

    def _answer(self, case: str, nth: int) -> None:
        content = {"GOOD": json.dumps(GOOD), "FENCE": "Here:\n```json\n" + json.dumps(GOOD) + "\n```",
                   "BADJSON": '{"color": "red", ', "WRONGTYPE": '["red", "t-shirt"]', "EMPTY": ""}
        if case in content:
            self._send(200, {"choices": [{"message": {"role": "assistant", "content": content[case]}}]})
        elif case == "ENVELOPE":
            self._send(200, {"result": "ok"})
        elif case == "SLOW":
            time.sleep(1.5)
            self._send(200, {"choices": [{"message": {"content": json.dumps(GOOD)}}]})
        elif case == "FLAKY" and nth == 1:
            self._send(503, {"error": "overloaded"})
        elif case == "BUSY" and nth == 1:
            self._send(429, {"error": "slow down"}, {"Retry-After": "1.2"})
        elif case in ("FLAKY", "BUSY"):
            self._send(200, {"choices": [{"message": {"content": json.dumps(GOOD)}}]})
        else:
            self._send(400, {"error": f"bad request {case}"})


@pytest.fixture
def server() -> Iterator[ChatServer]:
    srv = ChatServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def extractor(url: str, **kw) -> OpenAIExtractor:
    opts = {"base_url": url, "model": "test-vlm", "timeout_s": 0.5, "max_retries": 2, "max_concurrency": 4, **kw}
    return OpenAIExtractor(**opts)


def run_cases(ex: OpenAIExtractor, cases: list[str], tmp: Path) -> dict[str, tuple[str, str, str]]:
    rows = [{"product_id": c, "title": f"{c} product", "image_path": product_image(tmp / f"{c}.jpg", (200, 0, 0))}
            for c in cases]
    out = ex(prepare_batch(products(rows).to_pydict(), image_mode="jpeg", max_side=64))
    return {pid: (kind, attrs, raw) for pid, kind, attrs, raw in
            zip(out["product_id"], out["error_kind"], out["attributes"], out["raw"])}


def test_good_and_malformed_answers(server: ChatServer, tmp_path: Path) -> None:
    cases = ["GOOD", "FENCE", "BADJSON", "WRONGTYPE", "EMPTY", "ENVELOPE", "E400"]
    got = run_cases(extractor(server.url), cases, tmp_path)
    for ok in ("GOOD", "FENCE"):
        assert got[ok][0] == ""
        assert {tuple(a[:2]) for a in json.loads(got[ok][1])} == {("category", "t-shirt"), ("color", "red"),
                                                                  ("pattern", "striped")}
    assert {c: got[c][0] for c in cases[2:]} == {"BADJSON": "invalid_json", "WRONGTYPE": "wrong_type",
                                                 "EMPTY": "empty", "ENVELOPE": "invalid_response",
                                                 "E400": "http_error"}
    assert got["BADJSON"][2] == '{"color": "red", '  # the raw text is kept for the failure record
    assert server.requests["E400"] == 1  # a 400 is not retried
    body = server.bodies[0]
    image = body["messages"][1]["content"][0]["image_url"]["url"]
    assert image.startswith("data:image/jpeg;base64,") and body["response_format"]["type"] == "json_schema"


def test_slow_answers_time_out_after_retries_and_503_is_retried(server: ChatServer, tmp_path: Path) -> None:
    start = time.perf_counter()
    got = run_cases(extractor(server.url), ["SLOW", "FLAKY"], tmp_path)
    assert got["SLOW"][0] == "timeout" and server.requests["SLOW"] == 3  # 1 try + 2 retries
    assert got["FLAKY"][0] == "" and server.requests["FLAKY"] == 2
    assert time.perf_counter() - start < 6


def test_a_429_waits_as_long_as_retry_after_says(server: ChatServer, tmp_path: Path) -> None:
    got = run_cases(extractor(server.url), ["BUSY"], tmp_path)
    first, second = server.arrivals["BUSY"]
    assert got["BUSY"][0] == "" and second - first >= 1.2  # the SDK's own backoff would be 0.5 s at most


def test_the_endpoint_is_required_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAIExtractor(model="test-vlm")
    layout = write_products(tmp_path / "run", [{"product_id": "p0", "title": "GOOD product"}])
    with pytest.raises(ValueError, match="base_url"):
        call_stage(run_extract, load_config(overrides=["extract.backend=openai", "extract.engine=local"]), layout)


def test_concurrency_limit(server: ChatServer, tmp_path: Path) -> None:
    server.delay = 0.2
    got = run_cases(extractor(server.url, max_concurrency=2, send_images=False), ["GOOD"] * 6, tmp_path)
    assert server.max_active == 2 and all(v[0] == "" for v in got.values())
    assert isinstance(server.bodies[0]["messages"][1]["content"], str)  # text only when images are off


def test_unreachable_server_is_a_per_product_failure(tmp_path: Path) -> None:
    got = run_cases(extractor("http://127.0.0.1:9/v1", max_retries=1), ["GOOD"], tmp_path)
    assert got["GOOD"][0] == "connection_error"


def test_stage_records_failures_and_retries_only_transient_ones(server: ChatServer, tmp_path: Path) -> None:
    rows = [{"product_id": c, "title": f"{c} product"} for c in ("GOOD", "BADJSON", "SLOW")]
    layout = write_products(tmp_path / "run", rows)
    cfg = load_config(overrides=["extract.backend=openai", "extract.engine=local", f"extract.openai.base_url={server.url}",
                                 "extract.openai.timeout_s=0.5", "extract.openai.max_retries=0"])
    counts = call_stage(run_extract, cfg, layout)
    assert counts["failures"] == 2 and counts["extracted"] == 3
    failures = pq.read_table(layout.dir("attributes") / "failures.parquet").to_pylist()
    assert {f["product_id"]: f["error"].split(":")[0] for f in failures} == {"BADJSON": "invalid_json",
                                                                            "SLOW": "timeout"}
    assert all(f["backend"] == "openai" for f in failures)
    attrs = pq.read_table(layout.attributes).to_pylist()
    assert {r["product_id"] for r in attrs} == {"GOOD"} and {r["source"] for r in attrs} == {"openai"}
    before = dict(server.requests)
    counts = call_stage(run_extract, cfg, layout)  # only the timed-out product is asked again
    assert counts["extracted"] == 1 and server.requests["SLOW"] == before["SLOW"] + 1
    assert server.requests["GOOD"] == before["GOOD"] and server.requests["BADJSON"] == before["BADJSON"]
