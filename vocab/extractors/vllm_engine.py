"""The ``vllm`` backend: an in-process vLLM engine with JSON-schema constrained decoding, batched.

vLLM is an optional extra (``pip install pinlanding[vllm]``), imported only when this backend loads
its model, inside the Ray actor that runs it (give the actor a GPU: ``extract.actor_gpus``).
"""
from __future__ import annotations

from typing import Any

from pinlanding.vocab.extractors.base import EXTRACTORS
from pinlanding.vocab.extractors.model import GenerationError, ModelExtractor
from pinlanding.vocab.extractors.prompting import OUTPUT_SCHEMA


def _sampling_params(max_tokens: int) -> Any:
    """Greedy sampling constrained to :data:`OUTPUT_SCHEMA` (new and older vLLM spellings)."""
    from vllm import SamplingParams

    try:
        from vllm.sampling_params import StructuredOutputsParams

        return SamplingParams(temperature=0.0, max_tokens=max_tokens,
                              structured_outputs=StructuredOutputsParams(json=OUTPUT_SCHEMA))
    except ImportError:  # vLLM < 0.11
        from vllm.sampling_params import GuidedDecodingParams

        return SamplingParams(temperature=0.0, max_tokens=max_tokens,
                              guided_decoding=GuidedDecodingParams(json=OUTPUT_SCHEMA))


@EXTRACTORS.register("vllm")
class VLLMExtractor(ModelExtractor):
    name = "vllm"

    def __init__(self, model: str = "Qwen/Qwen2.5-VL-7B-Instruct", prompt: str = "extract-v1",
                 max_new_tokens: int = 400, max_model_len: int = 8192, gpu_memory_utilization: float = 0.85,
                 tensor_parallel_size: int = 1, send_images: bool = True, dtype: str = "auto") -> None:
        self.model = model
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.tensor_parallel_size = tensor_parallel_size
        self.send_images = send_images
        self.dtype = dtype
        self._llm = None
        self._params = None

    def _load(self) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ModuleNotFoundError("the vllm extraction backend needs `pip install pinlanding[vllm]`") from exc
        kwargs: dict[str, Any] = {"model": self.model, "max_model_len": self.max_model_len, "dtype": self.dtype,
                                  "gpu_memory_utilization": self.gpu_memory_utilization,
                                  "tensor_parallel_size": self.tensor_parallel_size}
        if self.send_images:
            kwargs["limit_mm_per_prompt"] = {"image": 1}
        self._llm = LLM(**kwargs)
        self._params = _sampling_params(self.max_new_tokens)

    def _generate(self, rows: list[dict[str, Any]]) -> list[str | GenerationError]:
        if self._llm is None:
            self._load()
        conversations = [self.prompt_.messages(r, self.image_url(r)) for r in rows]
        outputs = self._llm.chat(conversations, self._params, use_tqdm=False)
        answers: list[str | GenerationError] = []
        for out in outputs:
            text = out.outputs[0].text if out.outputs else ""
            reason = out.outputs[0].finish_reason if out.outputs else "none"
            answers.append(text if reason != "length" else GenerationError(
                "too_long", f"generation hit max_new_tokens={self.max_new_tokens}", text))
        return answers
