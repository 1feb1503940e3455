"""The transformers backend with a tiny random-weight Llama built from a config (no download).

Its answers are garbage by construction: every product must come back as a recorded failure with the
raw text, never as a crash.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from extract_fixtures import products

from pinlanding.vocab.extractors.model import TransformersExtractor
from pinlanding.vocab.extractors.prepare import prepare_batch

WORDS = "{ } [ ] : , \" color red blue shirt title brand json the a of and men women cotton".split()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-llama")
    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "[EOS]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            eos_token="[EOS]").save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                         pad_token_id=1, eos_token_id=2, bos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def batch(n: int = 3) -> dict:
    rows = [{"product_id": f"p{i}", "title": f"Acme Men Red Cotton Shirt {i}", "description": "A red shirt."}
            for i in range(n)]
    return prepare_batch(products(rows).to_pydict(), image_mode="jpeg")


def test_garbage_from_a_tiny_model_becomes_per_product_failures(tiny_llama: Path) -> None:
    ex = TransformersExtractor(model=str(tiny_llama), device="cpu", max_new_tokens=12, generate_batch_size=2)
    assert ex.identity()["model"] == str(tiny_llama) and ex.identity()["prompt_version"].startswith("extract-v1@")
    out = ex(batch(3))
    assert list(out["product_id"]) == ["p0", "p1", "p2"]
    kinds = list(out["error_kind"])
    assert all(k in {"invalid_json", "empty", "wrong_type", "no_attributes"} for k in kinds), kinds
    assert all(json.loads(a) == [] for a in out["attributes"])
    assert any(r for r in out["raw"])  # the garbage text is kept for inspection


def test_missing_model_is_recorded_not_raised(tmp_path: Path) -> None:
    out = TransformersExtractor(model=str(tmp_path / "nope"), device="cpu")(batch(2))
    assert list(out["error_kind"]) == ["backend_error", "backend_error"]
    assert "nope" in out["error"][0]
