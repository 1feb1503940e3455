"""The ``vllm`` backend: an in-process vLLM engine, batched, JSON-schema constrained when asked.

vLLM is an optional extra (``pip install pinlanding[vllm]``), imported when the engine first loads,
inside the process (e.g. the Ray actor with a GPU) that runs it.
"""
from __future__ import annotations

from typing import Any, Sequence

from pinlanding.llm.base import MODELS, GenerationError, Messages, no_yes_no, yes_share


def _sampling_params(max_tokens: int, schema: dict[str, Any] | None) -> Any:
    """Greedy sampling, constrained to ``schema`` when given (new and older vLLM spellings)."""
    from vllm import SamplingParams

    if schema is None:
        return SamplingParams(temperature=0.0, max_tokens=max_tokens)
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return SamplingParams(temperature=0.0, max_tokens=max_tokens,
                              structured_outputs=StructuredOutputsParams(json=schema))
    except ImportError:  # vLLM < 0.11
        from vllm.sampling_params import GuidedDecodingParams

        return SamplingParams(temperature=0.0, max_tokens=max_tokens, guided_decoding=GuidedDecodingParams(json=schema))


@MODELS.register("vllm")
class VLLMEngine:
    name = "vllm"

    def __init__(self, model: str = "", max_new_tokens: int = 400, max_model_len: int = 8192,
                 gpu_memory_utilization: float = 0.85, tensor_parallel_size: int = 1, dtype: str = "auto",
                 images: bool = True, top_logprobs: int = 20) -> None:
        if not model:
            raise ValueError("the vllm backend needs model, a model name or local folder")
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.tensor_parallel_size = tensor_parallel_size
        self.dtype = dtype
        self.images = images
        self.top_logprobs = top_logprobs
        self._llm: Any = None

    def _engine(self) -> Any:
        if self._llm is None:
            try:
                from vllm import LLM
            except ImportError as exc:
                raise ModuleNotFoundError("the vllm backend needs `pip install pinlanding[vllm]`") from exc
            kwargs: dict[str, Any] = {"model": self.model, "max_model_len": self.max_model_len, "dtype": self.dtype,
                                      "gpu_memory_utilization": self.gpu_memory_utilization,
                                      "tensor_parallel_size": self.tensor_parallel_size}
            if self.images:
                kwargs["limit_mm_per_prompt"] = {"image": 1}
            self._llm = LLM(**kwargs)
        return self._llm

    def generate(self, conversations: Sequence[Messages], schema: dict[str, Any] | None = None
                 ) -> list[str | GenerationError]:
        outputs = self._engine().chat(list(conversations), _sampling_params(self.max_new_tokens, schema),
                                      use_tqdm=False)
        answers: list[str | GenerationError] = []
        for out in outputs:
            if not out.outputs:
                answers.append(GenerationError("empty", "the engine returned no output"))
                continue
            first = out.outputs[0]
            answers.append(first.text if first.finish_reason != "length" else GenerationError(
                "too_long", f"generation hit max_new_tokens={self.max_new_tokens}", first.text))
        return answers

    def yes_probability(self, prompts: Sequence[str]) -> list[float | GenerationError]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.top_logprobs)
        results: list[float | GenerationError] = []
        for out in self._engine().generate(list(prompts), params, use_tqdm=False):
            try:
                top = {str(lp.decoded_token): float(lp.logprob) for lp in out.outputs[0].logprobs[0].values()}
            except (AttributeError, IndexError, TypeError, ValueError) as exc:
                results.append(GenerationError("invalid_response", f"{type(exc).__name__}: {exc}"))
                continue
            p = yes_share(top)
            results.append(no_yes_no(out.outputs[0].text) if p is None else p)
        return results
