"""The ``openai`` backend: any OpenAI-compatible chat completions endpoint, through the ``openai`` SDK.

The only module that sends HTTP to model servers. The SDK retries timeouts, connection errors, 408,
409, 429 and 5xx answers with exponential backoff, honouring ``Retry-After``; requests run
concurrently up to ``max_concurrency``. Whatever still fails becomes a :class:`GenerationError` for
that request alone. The endpoint has no default: it is required config.
"""
from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Awaitable, Callable, Sequence

from pinlanding.llm.base import MODELS, NO, YES, GenerationError, Messages, no_yes_no, yes_share

Reader = Callable[[Any], "str | float | GenerationError"]


@MODELS.register("openai")
class OpenAIChat:
    name = "openai"

    def __init__(self, base_url: str = "", model: str = "", api_key_env: str = "OPENAI_API_KEY",
                 response_format: str = "json_schema", temperature: float = 0.0, max_tokens: int = 400,
                 timeout_s: float = 60.0, max_retries: int = 3, max_concurrency: int = 8, top_logprobs: int = 10,
                 transport: Any = None) -> None:
        if not base_url:
            raise ValueError("the openai backend needs base_url, the OpenAI-compatible endpoint to call "
                             "(e.g. http://127.0.0.1:8000/v1 for `vllm serve`); there is no default")
        if not model:
            raise ValueError("the openai backend needs model, the model name the endpoint serves")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.response_format = response_format
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.top_logprobs = top_logprobs
        self.transport = transport  # an httpx transport, for tests

    def generate(self, conversations: Sequence[Messages], schema: dict[str, Any] | None = None
                 ) -> list[str | GenerationError]:
        body: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if schema is not None and self.response_format == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        elif schema is not None and self.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        return self._run([{**body, "messages": m} for m in conversations], _content)

    def yes_probability(self, prompts: Sequence[str]) -> list[float | GenerationError]:
        body = {"max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": self.top_logprobs}
        return self._run([{**body, "messages": [{"role": "user", "content": p}]} for p in prompts], _p_yes)

    def _run(self, bodies: list[dict[str, Any]], read: Reader) -> list[Any]:
        return asyncio.run(self._gather(bodies, read)) if bodies else []

    async def _gather(self, bodies: list[dict[str, Any]], read: Reader) -> list[Any]:
        import openai

        http = openai.DefaultAsyncHttpxClient(limits=_limits(self.max_concurrency), transport=self.transport)
        # the SDK insists on a key; servers without auth (vllm serve, llama.cpp) ignore this placeholder
        key = os.environ.get(self.api_key_env) or "EMPTY"
        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=key,
                                    timeout=self.timeout_s, max_retries=self.max_retries, http_client=http)
        sem = asyncio.Semaphore(self.max_concurrency)
        async with client:
            return list(await asyncio.gather(*(self._one(client.chat.completions.with_raw_response.create,
                                                         sem, body, read) for body in bodies)))

    async def _one(self, create: Callable[..., Awaitable[Any]], sem: asyncio.Semaphore, body: dict[str, Any],
                   read: Reader) -> Any:
        import openai

        attempts = f"after {self.max_retries + 1} attempts"
        async with sem:
            try:
                raw = await create(model=self.model, **body)
            except openai.APITimeoutError:
                return GenerationError("timeout", f"no answer within {self.timeout_s}s {attempts}")
            except openai.APIConnectionError as exc:
                return GenerationError("connection_error", f"{type(exc.__cause__ or exc).__name__}: {exc} {attempts}")
            except openai.APIStatusError as exc:
                return GenerationError("http_error", f"HTTP {exc.status_code}", exc.response.text[:2000])
        return read(raw.http_response)


def _limits(max_concurrency: int) -> Any:
    import httpx

    return httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)


def _choice(resp: Any) -> dict[str, Any] | GenerationError:
    """The first choice of a chat completion; a malformed envelope is a failure with the body kept."""
    try:
        choice = resp.json()["choices"][0]
        if isinstance(choice, dict):
            return choice
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return GenerationError("invalid_response", "the answer is not a chat completion", resp.text[:2000])


def _content(resp: Any) -> str | GenerationError:
    """The first choice's message text (content parts joined)."""
    choice = _choice(resp)
    if isinstance(choice, GenerationError):
        return choice
    content = (choice.get("message") or {}).get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        return GenerationError("invalid_response", f"message content is {type(content).__name__}", resp.text[:2000])
    return content


def _p_yes(resp: Any) -> float | GenerationError:
    """P(yes) from the first token's top log-probabilities, else from the answer's first word (1 or 0)."""
    choice = _choice(resp)
    if isinstance(choice, GenerationError):
        return choice
    first = ((choice.get("logprobs") or {}).get("content") or [{}])[0]
    try:
        top = {str(t["token"]): float(t["logprob"]) for t in first.get("top_logprobs") or []}
    except (KeyError, TypeError, ValueError):
        top = {}
    if top:
        p = yes_share(top)
        return no_yes_no(json.dumps(top)[:200]) if p is None else p
    text = _content(resp)
    if isinstance(text, GenerationError):
        return text
    word = text.strip().lower().split()[0].strip(".,!") if text.split() else ""
    return 1.0 if word in YES else 0.0 if word in NO else no_yes_no(text)
