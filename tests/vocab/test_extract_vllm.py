"""The vllm backend: exercised where vLLM imports (a CUDA machine with the extra), skipped elsewhere."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from extract_fixtures import products  # noqa: E402

from pinlanding.vocab.extractors.prepare import prepare_batch  # noqa: E402
from pinlanding.vocab.extractors.vllm_engine import VLLMExtractor  # noqa: E402

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def batch() -> dict:
    rows = [{"product_id": "p0", "title": "Acme Men Red Cotton Shirt", "description": "A red shirt."}]
    return prepare_batch(products(rows).to_pydict(), image_mode="jpeg")


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the missing-extra path cannot be exercised")
def test_without_vllm_the_failure_names_the_extra() -> None:
    out = VLLMExtractor(model="any")(batch())
    assert out["error_kind"][0] == "backend_error" and "pip install pinlanding[vllm]" in out["error"][0]


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
    # constrained decoding yields a JSON object, or a recorded failure; never an exception
    assert out["error_kind"][0] in {"", "no_attributes", "too_long", "invalid_json", "backend_error"}
    if out["error_kind"][0] == "":
        assert isinstance(json.loads(out["attributes"][0]), list)
