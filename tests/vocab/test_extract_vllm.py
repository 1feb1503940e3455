"""The vllm backend: its engine calls against a stand-in ``vllm`` module everywhere, and a real engine
where vLLM imports (a CUDA machine with the extra)."""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
from extract_fixtures import product_image, products

from pinlanding.vocab.extractors.model import VLLMExtractor
from pinlanding.vocab.extractors.prepare import prepare_batch
from pinlanding.vocab.extractors.prompting import OUTPUT_SCHEMA

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def batch(rows: list[dict] | None = None) -> dict:
    rows = rows or [{"product_id": "p0", "title": "Acme Men Red Cotton Shirt", "description": "A red shirt."}]
    return prepare_batch(products(rows).to_pydict(), image_mode="jpeg", max_side=64)


def test_engine_calls_are_constrained_to_the_schema_and_long_answers_fail(monkeypatch, tmp_path: Path) -> None:
    seen: dict = {}

    class FakeLLM:
        def __init__(self, **kw):
            seen["engine"] = kw

        def chat(self, conversations, params, use_tqdm=True):
            seen["conversations"], seen["params"] = conversations, params
            good = types.SimpleNamespace(text='{"color": ["Red"], "category": "shirt"}', finish_reason="stop")
            cut = types.SimpleNamespace(text='{"color": ["Re', finish_reason="length")
            return [types.SimpleNamespace(outputs=[good]), types.SimpleNamespace(outputs=[cut])]

    class StructuredOutputsParams:
        def __init__(self, json):
            self.json = json

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = FakeLLM, lambda **kw: kw
    fake_params = types.ModuleType("vllm.sampling_params")
    fake_params.StructuredOutputsParams = StructuredOutputsParams
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", fake_params)
    rows = [{"product_id": "p0", "title": "Red Shirt", "image_path": product_image(tmp_path / "p0.jpg", (200, 0, 0))},
            {"product_id": "p1", "title": "Blue Shirt"}]
    out = VLLMExtractor(model="local/vlm", max_new_tokens=50)(batch(rows))
    assert list(out["error_kind"]) == ["", "too_long"]
    assert {tuple(a[:2]) for a in json.loads(out["attributes"][0])} == {("color", "red"), ("category", "shirt")}
    assert out["raw"][1] == '{"color": ["Re'  # the cut answer is kept for the failure record
    assert seen["params"]["structured_outputs"].json == OUTPUT_SCHEMA and seen["params"]["max_tokens"] == 50
    assert seen["engine"]["model"] == "local/vlm" and seen["engine"]["limit_mm_per_prompt"] == {"image": 1}
    image_part = seen["conversations"][0][1]["content"][0]
    assert image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert isinstance(seen["conversations"][1][1]["content"], str)  # no image: text only


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the missing-extra path cannot be exercised")
def test_without_vllm_the_failure_names_the_extra() -> None:
    out = VLLMExtractor(model="any")(batch())
    assert out["error_kind"][0] == "backend_error" and "pip install pinlanding[vllm]" in out["error"][0]


def test_a_model_is_required() -> None:
    with pytest.raises(ValueError, match="needs model"):
        VLLMExtractor(model="")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="vLLM does not import here (optional extra `pinlanding[vllm]`, "
                                         "needs a CUDA GPU); the backend's vLLM path is not exercised")
def test_vllm_engine_with_a_tiny_model(tmp_path: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    words = "{ } [ ] : , \" color red shirt".split()
    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "[EOS]", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            eos_token="[EOS]").save_pretrained(tmp_path)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    ex = VLLMExtractor(model=str(tmp_path), send_images=False, max_new_tokens=32, max_model_len=1024,
                       gpu_memory_utilization=0.3)
    out = ex(batch())
    # the engine ran (no backend error) and constrained decoding allows only a JSON object, so the answer
    # parses (attributes or none found) unless the random model ran out of tokens mid-object
    assert out["error_kind"][0] in {"", "no_attributes", "too_long"}, out["error"][0]
    if out["error_kind"][0] != "too_long":
        assert isinstance(json.loads(out["raw"][0]), dict)
