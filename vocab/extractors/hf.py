"""The ``transformers`` backend: a local Hugging Face VLM or text LLM, loaded by path.

A model whose config has a ``vision_config`` is driven through its processor with the image; any
other causal LM gets the text prompt (its chat template when it has one). Greedy decoding; the
answer is parsed like every model answer, so a model that writes garbage yields per-product
failures, not a crash.
"""
from __future__ import annotations

import io
from typing import Any

from pinlanding.vocab.extractors.base import EXTRACTORS
from pinlanding.vocab.extractors.model import GenerationError, ModelExtractor

_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


@EXTRACTORS.register("transformers")
class TransformersExtractor(ModelExtractor):
    name = "transformers"

    def __init__(self, model: str = "", prompt: str = "extract-v1", device: str = "auto", dtype: str = "auto",
                 max_new_tokens: int = 256, send_images: bool = True, generate_batch_size: int = 8) -> None:
        self.model = model
        self.prompt = prompt
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.send_images = send_images
        self.generate_batch_size = generate_batch_size
        self._lm = None
        self._processor = None
        self._vision = False

    def _load(self) -> None:
        if not self.model:
            raise ValueError("extract.transformers.model is empty; set it to a local model folder")
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from pinlanding.collections.engines import torch_device

        device = torch_device(self.device)
        dtype = getattr(torch, _DTYPES[self.dtype]) if self.dtype in _DTYPES else "auto"
        config = AutoConfig.from_pretrained(self.model)
        self._vision = hasattr(config, "vision_config") and self.send_images
        if self._vision:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self._processor = AutoProcessor.from_pretrained(self.model)
            self._processor.tokenizer.padding_side = "left"
            self._lm = AutoModelForImageTextToText.from_pretrained(self.model, dtype=dtype)
        else:
            self._processor = AutoTokenizer.from_pretrained(self.model)
            self._processor.padding_side = "left"
            if self._processor.pad_token is None:
                self._processor.pad_token = self._processor.eos_token or self._processor.unk_token
            self._lm = AutoModelForCausalLM.from_pretrained(self.model, dtype=dtype)
        self._lm.to(device).eval()

    def _prompts(self, rows: list[dict[str, Any]]) -> list[str]:
        tok = self._processor
        if getattr(tok, "chat_template", None):
            msgs = [self.prompt_.messages(r, "image" if self._vision and r.get("image_jpeg") else None) for r in rows]
            if self._vision:  # processors want {"type": "image"} placeholders, the pixels go separately
                for m in msgs:
                    if isinstance(m[1]["content"], list):
                        m[1]["content"][0] = {"type": "image"}
            return [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in msgs]
        return [self.prompt_.text(r) for r in rows]

    def _generate_chunk(self, rows: list[dict[str, Any]]) -> list[str]:
        import torch

        texts = self._prompts(rows)
        if self._vision:
            from PIL import Image

            images = [Image.open(io.BytesIO(r["image_jpeg"])).convert("RGB") if r.get("image_jpeg") else None
                      for r in rows]
            if any(i is None for i in images):
                raise ValueError("a product without an image in a vision batch; set send_images=false")
            enc = self._processor(text=texts, images=images, return_tensors="pt", padding=True)
        else:
            enc = self._processor(texts, return_tensors="pt", padding=True)
        enc = enc.to(self._lm.device)
        pad = getattr(self._processor, "pad_token_id", None) or getattr(
            getattr(self._processor, "tokenizer", None), "pad_token_id", None)
        with torch.inference_mode():
            out = self._lm.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        new = out[:, enc["input_ids"].shape[1]:]
        return self._processor.batch_decode(new, skip_special_tokens=True)

    def _generate(self, rows: list[dict[str, Any]]) -> list[str | GenerationError]:
        if self._lm is None:
            self._load()
        answers: list[str | GenerationError] = []
        for start in range(0, len(rows), self.generate_batch_size):
            chunk = rows[start:start + self.generate_batch_size]
            try:
                answers.extend(self._generate_chunk(chunk))
            except (RuntimeError, ValueError) as exc:  # e.g. a prompt over the context length
                answers.extend(GenerationError("backend_error", f"{type(exc).__name__}: {exc}") for _ in chunk)
        return answers
