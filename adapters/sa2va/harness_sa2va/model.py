"""Loading a Sa2VA checkpoint as ``sa2va_eval_refcoco.py`` (9832e1a) loads it, and one ``predict_forward``.

The model code is the checkpoint's own remote code (the repository's ``projects/sa2va/hf/models*/``,
shipped inside each Hub checkpoint), loaded with ``trust_remote_code=True``; nothing of it is copied
here. Upstream: ``AutoModel.from_pretrained(path, torch_dtype=torch.bfloat16, low_cpu_mem_usage=True,
use_flash_attn=True, trust_remote_code=True).eval().cuda()``, ``AutoTokenizer.from_pretrained(path,
trust_remote_code=True)``, and an ``AutoProcessor`` only when ``'qwen' in path.lower()`` (the
InternVL checkpoints build their inputs from the tokenizer and their own template).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any


def flash_attention_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def wants_processor(checkpoint: str, use_processor: bool | None = None) -> bool:
    """Upstream's rule: a processor for checkpoints whose path names "qwen" (Qwen2.5-VL, Qwen3-VL)."""
    return ("qwen" in checkpoint.lower()) if use_processor is None else bool(use_processor)


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    processor: Any


def load(checkpoint: str, device: str, dtype: str = "bfloat16", use_flash_attn: bool | None = None,
         use_processor: bool | None = None) -> Loaded:
    import torch
    from transformers import AutoModel, AutoProcessor, AutoTokenizer

    flash = flash_attention_available() and str(device).startswith("cuda") if use_flash_attn is None else use_flash_attn
    model = AutoModel.from_pretrained(checkpoint, torch_dtype=getattr(torch, dtype), low_cpu_mem_usage=True,
                                      use_flash_attn=flash, trust_remote_code=True).eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True) if wants_processor(
        checkpoint, use_processor) else None
    return Loaded(model, tokenizer, processor)


def predict_forward(loaded: Loaded, image: Any, text: str) -> tuple[str, list[Any]]:
    """Upstream's call for one sentence: ``model.predict_forward(image=..., text=..., tokenizer=..., processor=...)``."""
    import torch

    with torch.inference_mode():
        pred = loaded.model.predict_forward(image=image, text=text, tokenizer=loaded.tokenizer, processor=loaded.processor)
    return str(pred["prediction"]), list(pred["prediction_masks"])
