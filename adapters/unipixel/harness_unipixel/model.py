"""Loading UniPixel from an upstream checkout (its code is imported, never copied) and running one sentence.

``unipixel.model`` registers ``PixelQwen2_5_VLConfig`` / ``PixelQwen2_5_VLForConditionalGeneration``
/ ``PatchedQwen2_5_VLProcessor`` with transformers' Auto classes, and imports the checkout's own
(modified) ``sam2`` package; the model is built by upstream's ``unipixel.model.builder.build_model``
exactly as ``infer_seg.py`` builds it. The mask is the one upstream's forward draws while generating:
SAM2's video predictor prompted with the hidden state of the position that predicts ``<|seg|>``,
returned at the original frame size and thresholded at 0 (``model.seg``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.modelkit.upstream import Upstream, UpstreamError

from harness_unipixel import preprocess

UPSTREAM = Upstream(
    name="UniPixel",
    repository="PolyU-ChenLab/UniPixel",
    env="HARNESS_UNIPIXEL_REPO",
    revision="5c8e941",  # the commit the adapter was written against (UPSTREAM-2026.md)
    marker="unipixel/model/qwen2_5_vl.py",
    top_level=("unipixel", "sam2"),
    isolation="UniPixel must run in its own worker process (its sam2 package is a modified copy)",
)
MAX_NEW_TOKENS = 512  # infer_seg.py


def resolve_upstream(path: str | os.PathLike[str] | None) -> Path:
    return UPSTREAM.resolve(path)


def import_upstream(path: str | os.PathLike[str] | None, name: str = "unipixel.model") -> ModuleType:
    """Import ``name`` from the checkout (``unipixel.model`` registers the Auto classes)."""
    repo = resolve_upstream(path)
    module = UPSTREAM.import_module(repo, name)
    where = Path(module.__file__ or "").resolve()
    if repo.resolve() not in where.parents:
        raise UpstreamError(f"{name} was imported from {where}, not from {repo}")
    return module


def flash_attention_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def choose_precision(device: str, dtype: str | None = None, attn: str | None = None) -> tuple[str, str]:
    """bf16 with flash-attention 2 as upstream on GPU (sdpa when flash-attn is not installed); fp32 and sdpa on CPU."""
    on_gpu = str(device).startswith("cuda")
    chosen_dtype = dtype or ("bfloat16" if on_gpu else "float32")
    chosen_attn = attn or ("flash_attention_2" if on_gpu and flash_attention_available() else "sdpa")
    return chosen_dtype, chosen_attn


@contextlib.contextmanager
def sam2_overrides(qwen2_5_vl: ModuleType, overrides: list[str] | None) -> Iterator[None]:
    """While the model is constructed, compose its SAM2 config with extra Hydra ``overrides``
    (the tests build a tiny SAM2 this way; none by default, which changes nothing)."""
    if not overrides:
        yield
        return
    original = qwen2_5_vl.compose

    @functools.wraps(original)
    def compose(*args: Any, overrides: list[str] | None = None, **kwargs: Any) -> Any:
        return original(*args, overrides=[*(overrides or []), *extra], **kwargs)

    extra = list(overrides)
    qwen2_5_vl.compose = compose
    try:
        yield
    finally:
        qwen2_5_vl.compose = original


@dataclass
class Loaded:
    model: Any
    processor: Any
    device: str
    sam_size: int


def load(checkpoint: str, device: str, upstream_repo: str | None = None, dtype: str | None = None,
         attn: str | None = None, image_size: int | None = None, overrides: list[str] | None = None) -> Loaded:
    """Upstream's ``build_model(checkpoint, image_size=..., device=..., dtype=...)`` (infer_seg.py passes no image size)."""
    qwen2_5_vl = import_upstream(upstream_repo, "unipixel.model.qwen2_5_vl")
    import_upstream(upstream_repo, "unipixel.model")
    builder = import_upstream(upstream_repo, "unipixel.model.builder")
    chosen_dtype, chosen_attn = choose_precision(device, dtype, attn)
    with sam2_overrides(qwen2_5_vl, overrides):
        model, processor = builder.build_model(checkpoint, image_size=image_size, attn_implementation=chosen_attn,
                                               device=device, dtype=chosen_dtype)
    return Loaded(model, processor, str(next(model.parameters()).device), int(model.config.sam2_image_size))


def load_processor(checkpoint: str, upstream_repo: str | None = None) -> Any:
    """The checkpoint's processor as ``build_model`` loads it (``use_fast=True, do_resize=False``), without weights."""
    import_upstream(upstream_repo, "unipixel.model")
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(checkpoint, use_fast=True, do_resize=False)


def chat_text(processor: Any, question: str, sample_frames: int = preprocess.SAMPLE_FRAMES) -> str:
    """The chat as infer_seg.py renders it: one user turn, the one-frame video then the question."""
    messages = [{"role": "user", "content": [
        {"type": "video", "video": ["<frame>"], "min_pixels": preprocess.MIN_PIXELS,
         "max_pixels": preprocess.max_pixels(sample_frames)},
        {"type": "text", "text": question},
    ]}]
    return str(processor.apply_chat_template(messages, add_generation_prompt=True))


def model_inputs(processor: Any, question: str, pre: preprocess.Preprocessed,
                 sample_frames: int = preprocess.SAMPLE_FRAMES) -> Any:
    """The processor's tensors for one sentence (a ``BatchFeature``), as infer_seg.py's ``EvalDataset`` makes them."""
    text = chat_text(processor, question, sample_frames)
    return processor(text=[text], images=None, videos=[pre.llm_frames], return_tensors="pt", fps=[preprocess.FPS])


@dataclass(frozen=True)
class Answer:
    text: str
    mask: Any  # (h, w) bool numpy array, or None when the model drew no mask
    new_tokens: int


def segment(loaded: Loaded, question: str, pre: preprocess.Preprocessed, max_new_tokens: int = MAX_NEW_TOKENS,
            sample_frames: int = preprocess.SAMPLE_FRAMES) -> Answer:
    """One sentence through upstream's generation (greedy, ``max_new_tokens=512``); the first mask drawn."""
    import torch

    model, processor = loaded.model, loaded.processor
    data = model_inputs(processor, question, pre, sample_frames).to(loaded.device)
    # as infer_seg.py: the frames stay where the dataset made them (BatchFeature.to moves no list), cast
    # to SAM2's dtype; SAM2's video predictor moves each frame to its device itself
    frames = [pre.sam_frames.to(next(model.sam2.parameters()).dtype)]
    frame_size = [torch.Size(pre.frame_size)]
    with torch.inference_mode():
        output = model.generate(**data, frames=frames, frame_size=frame_size, do_sample=False, temperature=None,
                                top_k=None, top_p=None, repetition_penalty=None, max_new_tokens=max_new_tokens)
    new = output[0, data["input_ids"].size(1):]
    count = int(new.numel())
    if count and int(new[-1]) == processor.tokenizer.eos_token_id:
        new = new[:-1]
    text = str(processor.decode(new, clean_up_tokenization_spaces=False))
    seg = getattr(model, "seg", None) or []
    mask = seg[0][0][0].bool().numpy() if seg else None
    return Answer(text=text, mask=mask, new_tokens=count)


