"""The ``openai`` backend: any OpenAI-compatible chat completions endpoint over HTTP.

Images go as data URLs; requests run concurrently up to ``max_concurrency`` per actor; timeouts,
connection errors, 429 and 5xx answers are retried with exponential backoff and jitter (honouring
``Retry-After``), other HTTP errors are not. Whatever still fails becomes a per-product failure.
"""
from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from pinlanding.vocab.extractors.base import EXTRACTORS
from pinlanding.vocab.extractors.model import GenerationError, ModelExtractor
from pinlanding.vocab.extractors.prompting import OUTPUT_SCHEMA

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0


@EXTRACTORS.register("openai")
class OpenAIExtractor(ModelExtractor):
    name = "openai"

    def __init__(self, base_url: str = "http://127.0.0.1:8000/v1", model: str = "Qwen/Qwen2.5-VL-7B-Instruct",
                 prompt: str = "extract-v1", api_key_env: str = "OPENAI_API_KEY", send_images: bool = True,
                 response_format: str = "json_schema", temperature: float = 0.0, max_tokens: int = 400,
                 timeout_s: float = 60.0, max_retries: int = 3, backoff_s: float = 1.0,
                 max_concurrency: int = 8) -> None:
        self.base_url = base_url
        self.model = model
        self.prompt = prompt
        self.api_key_env = api_key_env
        self.send_images = send_images
        self.response_format = response_format
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_concurrency = max_concurrency

    def request_body(self, row: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": self.prompt_.messages(row, self.image_url(row)),
                                "temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.response_format == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "attributes", "schema": OUTPUT_SCHEMA}}
        elif self.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def _generate(self, rows: list[dict[str, Any]]) -> list[str | GenerationError]:
        return asyncio.run(self._generate_all(rows))

    async def _generate_all(self, rows: list[dict[str, Any]]) -> list[str | GenerationError]:
        import httpx

        key = os.environ.get(self.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=self.max_concurrency)
        sem = asyncio.Semaphore(self.max_concurrency)
        async with httpx.AsyncClient(base_url=self.base_url.rstrip("/"), headers=headers, limits=limits,
                                     timeout=httpx.Timeout(self.timeout_s)) as client:
            return list(await asyncio.gather(*(self._one(client, sem, row) for row in rows)))

    async def _one(self, client: Any, sem: asyncio.Semaphore, row: dict[str, Any]) -> str | GenerationError:
        import httpx

        body = self.request_body(row)
        error = GenerationError("backend_error", "no attempt made")
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * (2 ** attempt) * (0.5 + random.random())
            async with sem:
                try:
                    resp = await client.post("/chat/completions", json=body)
                except httpx.TimeoutException as exc:
                    error = GenerationError("timeout", f"no answer within {self.timeout_s}s ({type(exc).__name__})")
                except httpx.TransportError as exc:
                    error = GenerationError("connection_error", f"{type(exc).__name__}: {exc}")
                else:
                    if resp.status_code == 200:
                        return _content(resp)
                    error = GenerationError("http_error", f"HTTP {resp.status_code}", resp.text[:2000])
                    if resp.status_code not in RETRY_STATUS:
                        return error
                    retry_after = resp.headers.get("retry-after", "")
                    if retry_after.replace(".", "", 1).isdigit():
                        wait = min(float(retry_after), MAX_RETRY_AFTER_S)
            if attempt < self.max_retries:
                await asyncio.sleep(wait)
        error.args = (f"{error.args[0]} after {self.max_retries + 1} attempts",)
        return error


def _content(resp: Any) -> str | GenerationError:
    """The first choice's message text; a malformed envelope is a failure with the body kept."""
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return GenerationError("invalid_response", "the answer is not a chat completion", resp.text[:2000])
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        return GenerationError("invalid_response", f"message content is {type(content).__name__}", resp.text[:2000])
    return content
