"""The ``transformers`` backend: a local Hugging Face VLM or causal LM, loaded lazily from a folder.

A model whose config has a ``vision_config`` is driven through its processor with the conversation's
image; any other causal LM gets the text (its chat template when it has one). Greedy decoding, in
chunks of ``batch_size``; a chunk that fails (e.g. a prompt over the context length) becomes one
:class:`GenerationError` per request. ``yes_probability`` reads the next-token distribution.
"""
from __future__ import annotations

import io
from typing import Any, Callable, Sequence

from pinlanding.llm.base import MODELS, NO, YES, GenerationError, Messages, image_bytes, message_text

_DTYPES = ("float32", "float16", "bfloat16")


@MODELS.register("transformers")
class TransformersLM:
    name = "transformers"

    def __init__(self, model: str = "", device: str = "auto", dtype: str = "auto", max_new_tokens: int = 256,
                 images: bool = True, batch_size: int = 8, local_files_only: bool = True) -> None:
        if not model:
            raise ValueError("the transformers backend needs model, a local model folder")
        self.model = model
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.images = images
        self.batch_size = batch_size
        self.local_files_only = local_files_only
        self._lm: Any = None
        self._processor: Any = None
        self._vision = False

    def _load(self) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from pinlanding.collections.engines import torch_device

        dtype = getattr(torch, self.dtype) if self.dtype in _DTYPES else "auto"
        kw = {"local_files_only": self.local_files_only}
        self._vision = self.images and hasattr(AutoConfig.from_pretrained(self.model, **kw), "vision_config")
        if self._vision:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self._processor = AutoProcessor.from_pretrained(self.model, **kw)
            self._processor.tokenizer.padding_side = "left"
            self._lm = AutoModelForImageTextToText.from_pretrained(self.model, dtype=dtype, **kw)
        else:
            self._processor = AutoTokenizer.from_pretrained(self.model, **kw)
            self._processor.padding_side = "left"
            if self._processor.pad_token is None:
                self._processor.pad_token = self._processor.eos_token or self._processor.unk_token
            self._lm = AutoModelForCausalLM.from_pretrained(self.model, dtype=dtype, **kw)
        self._lm.to(torch_device(self.device)).eval()

    @property
    def _tokenizer(self) -> Any:
        return self._processor.tokenizer if self._vision else self._processor

    def _chunks(self, items: Sequence[Any], run: Callable[[list[Any]], list[Any]]) -> list[Any]:
        if self._lm is None:
            self._load()
        out: list[Any] = []
        for start in range(0, len(items), self.batch_size):
            chunk = list(items[start:start + self.batch_size])
            try:
                out.extend(run(chunk))
            except (RuntimeError, ValueError) as exc:
                out.extend(GenerationError("backend_error", f"{type(exc).__name__}: {exc}") for _ in chunk)
        return out

    def _text(self, messages: Messages, schema: dict[str, Any] | None) -> str:
        """The prompt text: the chat template where the model has one, else the messages' text joined."""
        if getattr(self._processor, "chat_template", None):
            msgs = [{"role": m["role"], "content": self._parts(m["content"])} for m in messages]
            return self._processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return "\n".join(message_text(m["content"]) for m in messages) + ("\nJSON:" if schema is not None else "")

    def _parts(self, content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        """Vision processors take an ``{"type": "image"}`` placeholder (pixels go separately); text models the text."""
        if isinstance(content, str) or not self._vision:
            return message_text(content)
        return [{"type": "image"} if p.get("type") == "image_url" else p for p in content]

    def _images(self, messages: Messages) -> list[Any]:
        from PIL import Image

        return [Image.open(io.BytesIO(image_bytes(p["image_url"]["url"]))).convert("RGB")
                for m in messages if isinstance(m["content"], list)
                for p in m["content"] if p.get("type") == "image_url"]

    def generate(self, conversations: Sequence[Messages], schema: dict[str, Any] | None = None
                 ) -> list[str | GenerationError]:
        return self._chunks(conversations, lambda chunk: self._generate_chunk(chunk, schema))

    def _generate_chunk(self, chunk: list[Messages], schema: dict[str, Any] | None) -> list[str]:
        import torch

        texts = [self._text(m, schema) for m in chunk]
        if self._vision:
            images = [self._images(m) for m in chunk]
            if any(len(i) != 1 for i in images):
                raise ValueError("a vision batch needs exactly one image per request; set send_images=false")
            enc = self._processor(text=texts, images=[i[0] for i in images], return_tensors="pt", padding=True)
        else:
            enc = self._processor(texts, return_tensors="pt", padding=True)
        enc = enc.to(self._lm.device)
        with torch.inference_mode():
            out = self._lm.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                    pad_token_id=self._tokenizer.pad_token_id)
        return self._processor.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def yes_probability(self, prompts: Sequence[str]) -> list[float | GenerationError]:
        return self._chunks(prompts, self._yes_chunk)

    def _yes_chunk(self, prompts: list[str]) -> list[float]:
        import torch

        tok = self._tokenizer
        vocab = tok.get_vocab()
        words = {t: tok.convert_tokens_to_string([t]).strip().lower() for t in vocab}
        yes_ids = [vocab[t] for t, w in words.items() if w in YES]
        no_ids = [vocab[t] for t, w in words.items() if w in NO]
        if not yes_ids or not no_ids:
            raise ValueError(f"the tokenizer of {self.model} has no single 'yes'/'no' token to score")
        enc = tok(prompts, return_tensors="pt", padding=True).to(self._lm.device)
        with torch.inference_mode():
            logp = torch.log_softmax(self._lm(**enc).logits[:, -1, :].float(), dim=-1)
        yes, no = torch.logsumexp(logp[:, yes_ids], dim=-1), torch.logsumexp(logp[:, no_ids], dim=-1)
        return torch.sigmoid(yes - no).tolist()  # P(yes) / (P(yes) + P(no))
