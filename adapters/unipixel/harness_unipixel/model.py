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


class ImageShare:
    """Work done once per image and reused for its other sentences (each part switchable).

    ``vision``: the Qwen ViT's output. Upstream's forward encodes ``pixel_values_videos`` at every
    sentence's prefill; the same image gives the same tensor, so the features computed for the first
    sentence are returned for the next ones (``get_video_features`` of the model's ``Qwen2_5_VLModel``,
    wrapped on the instance; a tensor that is not equal to the cached one is encoded as usual).

    ``sam2``: SAM2's image features. Upstream's forward calls ``sam2.init_state(frames, frame_size)``
    for every mask it draws, and SAM2's video predictor encodes the frame when its state's
    ``cached_features`` is empty; the features of the image's first state are put into the later
    states (``init_state`` wrapped on the instance; frames that are not equal are encoded as usual).

    Both reuse the very tensors the first computation produced, so the model computes the same
    numbers (the tests check masks and texts equal with and without).
    """

    def __init__(self, model: Any, vision: bool, sam2: bool) -> None:
        self.vision_encodes = 0
        self.sam2_encodes = 0
        self._video: tuple[Any, Any, Any] | None = None
        self._sam: tuple[Any, Any] | None = None
        self._pending: list[tuple[Any, dict[str, Any]]] = []
        inner = model.model
        original_video = inner.get_video_features
        original_init = model.sam2.init_state

        def get_video_features(pixel_values_videos: Any, video_grid_thw: Any = None) -> Any:
            import torch

            cached = self._video
            if vision and cached is not None and cached[0].shape == pixel_values_videos.shape and \
                    torch.equal(cached[0], pixel_values_videos) and torch.equal(cached[1], video_grid_thw):
                return cached[2]
            self.vision_encodes += 1
            embeds = original_video(pixel_values_videos, video_grid_thw)
            if vision:
                self._video = (pixel_values_videos, video_grid_thw, embeds)
            return embeds

        def init_state(frame: Any, frame_size: Any = None, *args: Any, **kwargs: Any) -> Any:
            import torch

            self._collect()
            state = original_init(frame, frame_size, *args, **kwargs)
            cached = self._sam
            if sam2 and cached is not None and cached[0].shape == frame.shape and torch.equal(cached[0], frame):
                state["cached_features"] = cached[1]
            else:
                self.sam2_encodes += 1
                if sam2:
                    self._pending.append((frame, state))
            return state

        inner.get_video_features = get_video_features
        model.sam2.init_state = init_state

    def _collect(self) -> None:
        """Keep the features of the states drawn since the last call (SAM2 filled them while propagating)."""
        for frame, state in self._pending:
            if state.get("cached_features"):
                self._sam = (frame, state["cached_features"])
        self._pending = []

    def new_image(self) -> None:
        """Forget the previous image's features (the next sentence is about another image)."""
        self._video = self._sam = None
        self._pending = []


@dataclass
class Loaded:
    model: Any
    processor: Any
    device: str
    sam_size: int
    share: ImageShare | None = None


def load(checkpoint: str, device: str, upstream_repo: str | None = None, dtype: str | None = None,
         attn: str | None = None, image_size: int | None = None, overrides: list[str] | None = None,
         share_vision: bool = True, share_sam2: bool = True) -> Loaded:
    """Upstream's ``build_model(checkpoint, image_size=..., device=..., dtype=...)`` (infer_seg.py passes no image size)."""
    qwen2_5_vl = import_upstream(upstream_repo, "unipixel.model.qwen2_5_vl")
    import_upstream(upstream_repo, "unipixel.model")
    builder = import_upstream(upstream_repo, "unipixel.model.builder")
    chosen_dtype, chosen_attn = choose_precision(device, dtype, attn)
    with sam2_overrides(qwen2_5_vl, overrides):
        model, processor = builder.build_model(checkpoint, image_size=image_size, attn_implementation=chosen_attn,
                                               device=device, dtype=chosen_dtype)
    return Loaded(model, processor, str(next(model.parameters()).device), int(model.config.sam2_image_size),
                  ImageShare(model, share_vision, share_sam2))


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


