"""The UniPixel adapter: ``unipixel/eval/infer_seg.py`` (PolyU-ChenLab/UniPixel 5c8e941) per sentence.

Models ``unipixel-3b`` (``PolyU-ChenLab/UniPixel-3B``) and ``unipixel-7b`` (``PolyU-ChenLab/UniPixel-7B``);
``unipixel`` takes its checkpoint from the option ``checkpoint``. Per sentence, as upstream:

1. the question (``prompts.question``): a phrase is normalised into ``Please segment the {query} in
   this image.``; a ReasonSeg text whose ``is_sentence`` is true becomes ``{text} Please provide the
   segmentation mask.`` (upstream's ``sentence`` type);
2. the image as a one-frame video (``preprocess``), computed once per image and reused for its
   sentences (the same tensors; upstream computes them per sentence); with ``share_vision`` and
   ``share_sam2`` (default true) the Qwen ViT's output and SAM2's image features of an image are
   computed once and reused for its other sentences (``model.ImageShare``; the same tensors);
3. upstream's processor call and greedy ``generate(max_new_tokens=512)`` on upstream's model class,
   whose forward draws the mask with SAM2's video predictor at the original size
   (``model.segment``); the first mask is the answer, the generated text is kept beside it.

A sentence for which the model draws no mask, or whose inference raises, is recorded as failed
(``mask`` absent, ``error`` says why), which the suites' ``failure: zero`` convention scores as an
empty mask. Upstream writes an all-zero mask in both cases (``failure: zero-mask``, the named
upstream variant; it scores the same under ``failure: zero`` but is not counted as a failure).

Options: ``checkpoint``, ``upstream_repo`` (else ``$HARNESS_UNIPIXEL_REPO``), ``device``, ``dtype``
(bf16 on GPU, fp32 on CPU), ``attn_implementation`` (flash-attention 2 when installed, else sdpa),
``max_new_tokens`` (512), ``sample_frames`` (16: infer_seg.py's default, which sets the pixel bound),
``failure`` (``record`` default, ``zero-mask``), ``sam2_image_size`` (upstream's ``--image_size``;
default the checkpoint's), ``share_vision`` / ``share_sam2`` (default true: see 2.),
``sam2_overrides`` (Hydra overrides for SAM2; tests only).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.modelkit.digests import array_sha1
from harness.types import ParseStatus, Prediction, Query

from harness_unipixel import manifest, preprocess, prompts

FAILURE_RULES = ("record", "zero-mask")
_KNOWN = ("checkpoint", "upstream_repo", "device", "dtype", "attn_implementation", "max_new_tokens", "sample_frames",
          "failure", "sam2_image_size", "sam2_overrides", "share_vision", "share_sam2")
_NOT_FINGERPRINTED = ("upstream_repo", "device")


def resolve_options(options: dict[str, Any], default_checkpoint: str | None) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_KNOWN))
    if unknown:
        raise TypeError(f"adapter 'unipixel' got unknown options {', '.join(unknown)}; known: {', '.join(_KNOWN)}")
    settings = {"checkpoint": default_checkpoint, "max_new_tokens": 512, "sample_frames": preprocess.SAMPLE_FRAMES,
                "failure": "record", "share_vision": True, "share_sam2": True, **options}
    if not settings["checkpoint"]:
        raise ValueError("adapter 'unipixel' needs the option checkpoint (or use unipixel-3b / unipixel-7b)")
    if settings["failure"] not in FAILURE_RULES:
        raise ValueError(f"unknown failure rule {settings['failure']!r}; known: {', '.join(FAILURE_RULES)}")
    if int(settings["sample_frames"]) < 1 or int(settings["max_new_tokens"]) < 1:
        raise ValueError("sample_frames and max_new_tokens must be positive")
    return settings


@dataclass
class Counters:
    sentences: int = 0
    generated_tokens: int = 0
    images_preprocessed: int = 0
    no_mask: int = 0
    failed: int = 0


class UniPixelAdapter(Adapter):
    """UniPixel behind the harness's adapter interface (see the module docstring)."""

    info: ClassVar[AdapterInfo] = AdapterInfo(
        name="unipixel", description=manifest.DESCRIPTION, outputs=manifest.OUTPUTS, box_space="pixel",
        version=manifest.VERSION, checkpoints=tuple(manifest.CHECKPOINTS),
    )
    DEFAULT_CHECKPOINT: ClassVar[str | None] = None

    def __init__(self, **options: Any) -> None:
        self.settings = resolve_options(options, self.DEFAULT_CHECKPOINT)
        self.options = {k: v for k, v in self.settings.items() if k not in _NOT_FINGERPRINTED}
        self._loaded: Any = None
        self._processor: Any = None
        self.counters = Counters()

    def load(self, device: str = "cpu") -> None:
        from harness_unipixel.model import load

        s = self.settings
        self._loaded = load(s["checkpoint"], s.get("device") or device, upstream_repo=s.get("upstream_repo"),
                            dtype=s.get("dtype"), attn=s.get("attn_implementation"), image_size=s.get("sam2_image_size"),
                            overrides=s.get("sam2_overrides"), share_vision=bool(s["share_vision"]),
                            share_sam2=bool(s["share_sam2"]))
        self._processor = self._loaded.processor

    def processor(self) -> Any:
        if self._processor is None:
            from harness_unipixel.model import load_processor

            self._processor = load_processor(self.settings["checkpoint"], self.settings.get("upstream_repo"))
        return self._processor

    def question(self, query: Query) -> str:
        return prompts.question(query.expression, is_sentence=bool(query.meta.get("is_sentence", False)))

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        if self._loaded is None:
            raise RuntimeError("UniPixelAdapter.predict before load()")
        if not queries:
            return []
        from harness_unipixel.model import segment

        pre = preprocess.preprocess(image, self._loaded.sam_size, int(self.settings["sample_frames"]))
        self.counters.images_preprocessed += 1
        if self._loaded.share is not None:
            self._loaded.share.new_image()
        h, w = pre.frame_size
        out = []
        for query in queries:
            start = time.perf_counter()
            self.counters.sentences += 1
            try:
                answer = segment(self._loaded, self.question(query), pre, int(self.settings["max_new_tokens"]),
                                 int(self.settings["sample_frames"]))
            except Exception as exc:
                if "OutOfMemoryError" in type(exc).__name__:
                    raise
                self.counters.failed += 1
                out.append(self._failed(h, w, None, f"inference failed: {type(exc).__name__}: {exc}", start))
                continue
            self.counters.generated_tokens += answer.new_tokens
            if answer.mask is None:
                self.counters.no_mask += 1
                out.append(self._failed(h, w, answer.text, "the model drew no mask (no <|seg|> predicted)", start))
                continue
            out.append(Prediction(mask=masks.encode(answer.mask), text=answer.text, answer=answer.text,
                                  parse_status=ParseStatus.OK, seconds=time.perf_counter() - start))
        return out

    def _failed(self, h: int, w: int, text: str | None, why: str, start: float) -> Prediction:
        seconds = time.perf_counter() - start
        status = ParseStatus.FAILED if text is not None else ParseStatus.NONE
        if self.settings["failure"] == "zero-mask":  # upstream: torch.zeros(1, frames, *frame_size)
            return Prediction(mask=masks.empty(h, w), text=text, answer=text, parse_status=status, seconds=seconds)
        return Prediction(mask=None, text=text, answer=text, parse_status=status, error=why, seconds=seconds)

    def inputs(self, image: np.ndarray, query: Query) -> dict[str, Any]:
        """The exact chat text and digests of the tensors the model is given, without weights."""
        from harness_unipixel.model import chat_text, model_inputs

        processor = self.processor()
        size = int(self.settings.get("sam2_image_size") or 1024)
        pre = preprocess.preprocess(image, size, int(self.settings["sample_frames"]))
        question = self.question(query)
        enc = model_inputs(processor, question, pre, int(self.settings["sample_frames"]))
        return {
            "question": question,
            "prompt": chat_text(processor, question, int(self.settings["sample_frames"])),
            "llm_frame_hw": [pre.llm_frames[0].height, pre.llm_frames[0].width],
            "pixel_values_videos_sha1": array_sha1(enc["pixel_values_videos"].float().numpy()),
            "video_grid_thw": [int(v) for v in enc["video_grid_thw"][0]],
            "input_ids_sha1": array_sha1(enc["input_ids"].numpy()),
            "prompt_tokens": int(enc["input_ids"].shape[1]),
            "sam_frames_sha1": array_sha1(pre.sam_frames.numpy()),
            "sam2_image_size": size,
        }

    def stats(self) -> dict[str, float]:
        out = {k: float(v) for k, v in vars(self.counters).items()}
        if self._loaded is not None and self._loaded.share is not None:
            out["vision_encoder_images"] = float(self._loaded.share.vision_encodes)
            out["segmenter_images"] = float(self._loaded.share.sam2_encodes)
        return out


class UniPixel3B(UniPixelAdapter):
    info: ClassVar[AdapterInfo] = AdapterInfo(
        name="unipixel-3b", description=manifest.DESCRIPTION + " (3B)", outputs=manifest.OUTPUTS, box_space="pixel",
        version=manifest.VERSION, checkpoints=("PolyU-ChenLab/UniPixel-3B",),
    )
    DEFAULT_CHECKPOINT: ClassVar[str | None] = "PolyU-ChenLab/UniPixel-3B"


class UniPixel7B(UniPixelAdapter):
    info: ClassVar[AdapterInfo] = AdapterInfo(
        name="unipixel-7b", description=manifest.DESCRIPTION + " (7B)", outputs=manifest.OUTPUTS, box_space="pixel",
        version=manifest.VERSION, checkpoints=("PolyU-ChenLab/UniPixel-7B",),
    )
    DEFAULT_CHECKPOINT: ClassVar[str | None] = "PolyU-ChenLab/UniPixel-7B"
