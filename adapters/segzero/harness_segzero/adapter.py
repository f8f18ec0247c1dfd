"""Seg-Zero and VisionReasoner: Qwen2.5-VL writes boxes and points as JSON, SAM2 turns them into a mask.

The path per image, as upstream runs it (dvlab-research/Seg-Zero 42a3345
``evaluation_scripts/evaluation_visionreasoner.py``; VisionReasoner a455092
``vision_reasoner/models/vision_reasoner_model.py``):

1. squash the image to 840x840 (PIL bilinear), build the chat prompt (``prompts.py``), run it
   through ``qwen_vl_utils.process_vision_info`` and the checkpoint's processor (left padding);
2. ``generate(use_cache=True, max_new_tokens=1024 | 2048, do_sample=False)``, the rest of the
   generation settings from the checkpoint's ``generation_config`` exactly as upstream leaves them;
3. decode the new tokens only (``skip_special_tokens=True, clean_up_tokenization_spaces=False``);
4. parse the answer (``parsing.py``) and scale it to original pixels;
5. ``SAM2ImagePredictor.set_image(original)`` - once per image here, once per sentence upstream
   (the same image gives the same embedding) - then per object ``predict(point_coords, point_labels,
   box)`` with SAM2's default ``multimask_output=True``, keep the highest-scoring mask, OR the objects.

Upstream quirks that are *not* reproduced (README "Deviations"): VisionReasoner's box-only branch
that returns an empty mask, its "any exception in a batch -> empty masks for the whole batch",
and SAM errors that upstream silently drops from the evaluation (here: a failed prediction).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, ClassVar

import numpy as np
from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.answer import AnswerParseError, split_reasoning
from harness.modelkit.counters import update_peak_gpu_memory_mb
from harness.types import ParseStatus, Prediction, Query
from PIL import Image

from harness_segzero import parsing, prompts
from harness_segzero.manifest import MODELS, SAM2_LARGE


def _sha256(array: Any) -> str:
    data = np.ascontiguousarray(array.detach().float().cpu().numpy() if hasattr(array, "detach") else np.asarray(array))
    return hashlib.sha256(data.tobytes()).hexdigest()


def _info(name: str, description: str, model: str) -> AdapterInfo:
    """The adapters' outputs, box space and version are the same; SAM2-L is every variant's segmenter."""
    return AdapterInfo(name=name, description=description, outputs=("mask", "box", "text", "reasoning"), box_space="pixel",
                       version="1", checkpoints=(model, SAM2_LARGE))


class SegZeroAdapter(Adapter):
    """Seg-Zero-7B with its single-object prompt, as Seg-Zero's ``inference_scripts/infer.py`` and
    ``evaluation_scripts/evaluation.py`` run it; see ``VARIANT`` for the defaults."""

    info: ClassVar[AdapterInfo] = _info(
        "segzero", "Seg-Zero (Qwen2.5-VL-7B reasoning -> JSON box+2 points -> SAM2-L), its single-object prompt",
        MODELS["segzero"])
    # Every setting that changes outputs; all of them enter the run's fingerprint.
    VARIANT: ClassVar[dict[str, Any]] = {
        "model_path": MODELS["segzero"],
        "prompt": "single",  # infer.py / evaluation.py; "multi": VisionReasoner's multi-object prompt and parser
        "max_new_tokens": 1024,
        "sam_model": SAM2_LARGE,  # a hub id for SAM2ImagePredictor.from_pretrained ...
        "sam_config": None,  # ... or a sam2 config name plus a local checkpoint
        "sam_checkpoint": None,
        "sam_hydra_overrides": [],
        "sam_bf16_autocast": True,  # Seg-Zero runs SAM under torch.autocast("cuda", bfloat16)
        "dtype": "auto",  # bfloat16 on CUDA, float32 on CPU (upstream: bfloat16)
        "attn_implementation": "auto",  # flash_attention_2 when installed on CUDA, else sdpa
        "batch_size": 0,  # rows (sentences, across the call's images) per generate call; 0 = all of them
    }
    multi_image = True  # the engine sends up to --batch-size sentences spanning images: one generate call

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.VARIANT))
        if unknown:
            raise TypeError(f"adapter {self.info.name!r}: unknown options {', '.join(unknown)}; known: {', '.join(self.VARIANT)}")
        self.options = {**self.VARIANT, **options}
        if self.options["prompt"] not in ("multi", "single"):
            raise ValueError(f"prompt must be 'multi' or 'single', got {self.options['prompt']!r}")
        self._counters = {"images_encoded_by_segmenter": 0.0, "sam_decoder_calls": 0.0, "tokens_generated": 0.0,
                          "forward_passes": 0.0, "generate_calls": 0.0, "peak_gpu_memory_mb": 0.0}
        self.model: Any = None
        self.processor: Any = None
        self.sam: Any = None
        self.device = "cpu"

    # ----------------------------------------------------------------------------- loading
    def load(self, device: str = "cpu") -> None:
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self.device = device
        cuda = device.startswith("cuda")
        dtype = {"auto": torch.bfloat16 if cuda else torch.float32, "bfloat16": torch.bfloat16,
                 "float16": torch.float16, "float32": torch.float32}[self.options["dtype"]]
        attn = self.options["attn_implementation"]
        if attn == "auto":
            attn = "flash_attention_2" if cuda and _has_flash_attn() else "sdpa"
        path = self.options["model_path"]
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, torch_dtype=dtype, attn_implementation=attn)
        self.model.to(device).eval()
        self.model.register_forward_hook(self._count_forward)
        self.processor = AutoProcessor.from_pretrained(path, padding_side="left")
        self.processor.tokenizer.padding_side = "left"  # upstream asks for it; make sure it holds
        self.sam = self._load_sam(device)

    def _load_sam(self, device: str) -> Any:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        if self.options["sam_config"]:
            from sam2.build_sam import build_sam2

            model = build_sam2(self.options["sam_config"], self.options["sam_checkpoint"], device=device,
                               hydra_overrides_extra=list(self.options["sam_hydra_overrides"]))
            return SAM2ImagePredictor(model)
        return SAM2ImagePredictor.from_pretrained(self.options["sam_model"], device=device)

    def _count_forward(self, *_: Any) -> None:
        self._counters["forward_passes"] += 1

    # ----------------------------------------------------------------------------- prompt
    def _model_inputs(self, image: np.ndarray, samples: Sequence[Query]) -> tuple[list[str], Any]:
        resized = prompts.resize_for_model(Image.fromarray(image))
        return self._rows_inputs([(resized, s) for s in samples])

    def _rows_inputs(self, rows: Sequence[tuple[Image.Image, Query]]) -> tuple[list[str], Any]:
        """One left-padded batch of rows, each its own (resized) image and sentence, as upstream batches."""
        from qwen_vl_utils import process_vision_info

        convs = [prompts.messages(resized, s.expression, self.options["prompt"]) for resized, s in rows]
        texts = [self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
        image_inputs, video_inputs = process_vision_info(convs)
        # a copy: the processor expands <|image_pad|> in place in the list it is given
        batch = self.processor(text=list(texts), images=image_inputs, videos=video_inputs, padding=True, return_tensors="pt")
        return texts, batch.to(self.device)

    def inputs(self, image: np.ndarray, sample: Query) -> dict[str, Any]:
        """The exact prompt and hashes of what the language model and SAM are given."""
        texts, batch = self._model_inputs(image, [sample])
        sam_input = self.sam._transforms(Image.fromarray(image))
        return {
            "prompt": texts[0],
            "question": prompts.question(sample.expression, self.options["prompt"]),
            "llm_image_size": [prompts.RESIZE, prompts.RESIZE],
            "image_grid_thw": batch["image_grid_thw"].tolist(),
            "pixel_values_sha256": _sha256(batch["pixel_values"]),
            "input_ids_sha256": _sha256(batch["input_ids"]),
            "sam_input_shape": list(sam_input.shape),
            "sam_input_sha256": _sha256(sam_input),
        }

    # ----------------------------------------------------------------------------- inference
    def _generate(self, rows: Sequence[tuple[Image.Image, Query]]) -> list[str]:
        import torch

        _, batch = self._rows_inputs(rows)
        with torch.inference_mode():
            out = self.model.generate(**batch, use_cache=True, max_new_tokens=int(self.options["max_new_tokens"]), do_sample=False)
        new = out[:, batch["input_ids"].shape[1]:]  # left padding: every row's prompt has the same length
        pad = self.processor.tokenizer.pad_token_id
        self._counters["tokens_generated"] += float((new != pad).sum()) if pad is not None else float(new.numel())
        self._counters["generate_calls"] += 1
        return list(self.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def _parse(self, text: str, width: int, height: int) -> parsing.Parsed:
        xf, yf = width / prompts.RESIZE, height / prompts.RESIZE
        if self.options["prompt"] == "single":
            return parsing.parse_single(text, xf, yf)
        return parsing.parse_multi(text, xf, yf)

    def _sam_context(self) -> Any:
        import torch

        if self.device.startswith("cuda") and self.options["sam_bf16_autocast"]:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _segment(self, pil: Image.Image, parsed: parsing.Parsed, height: int, width: int, state: dict[str, bool]) -> np.ndarray:
        import torch

        mask_all = np.zeros((height, width), dtype=bool)
        with torch.inference_mode(), self._sam_context():
            if not state["encoded"]:
                self.sam.set_image(pil)
                state["encoded"] = True
                self._counters["images_encoded_by_segmenter"] += 1
            for p in parsed.prompts:
                masks_np, scores, _ = self.sam.predict(point_coords=[list(pt) for pt in p.points],
                                                       point_labels=[1] * len(p.points), box=list(p.box))
                self._counters["sam_decoder_calls"] += 1
                best = masks_np[np.argsort(scores)[::-1]][0].astype(bool)  # upstream's selection, ties included
                mask_all = np.logical_or(mask_all, best)
        return mask_all

    def predict(self, image: np.ndarray, samples: Sequence[Query]) -> list[Prediction]:
        return self.predict_many([(image, samples)])[0]

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        """Generate for the sentences of every image in left-padded batches of ``batch_size`` rows (0 =
        all rows of the call), as upstream batches rows of several images; then SAM2 per image, each
        image encoded once for all its sentences."""
        start = time.perf_counter()
        resized = [prompts.resize_for_model(Image.fromarray(image)) for image, _ in items]  # once per image
        rows = [(r, s) for r, (_, samples) in zip(resized, items) for s in samples]
        step = int(self.options["batch_size"]) or len(rows)
        texts: list[str] = []
        for i in range(0, len(rows), step):
            texts.extend(self._generate(rows[i:i + step]))
        results: list[list[Prediction]] = []
        at = 0
        for image, samples in items:
            results.append(self._segment_all(image, texts[at:at + len(samples)]))
            at += len(samples)
        update_peak_gpu_memory_mb(self._counters, self.device)
        seconds = (time.perf_counter() - start) / max(1, len(rows))
        return [[_with_seconds(p, seconds) for p in preds] for preds in results]

    def _segment_all(self, image: np.ndarray, texts: list[str]) -> list[Prediction]:
        height, width = image.shape[:2]
        pil = Image.fromarray(image)
        state = {"encoded": False}
        out: list[Prediction] = []
        for text in texts:
            reasoning, answer_text = split_reasoning(text)
            try:
                parsed = self._parse(text, width, height)
            except AnswerParseError as exc:
                out.append(Prediction(mask=None, text=text, reasoning=reasoning, answer=answer_text,
                                      parse_status=ParseStatus.FAILED, error=f"unparsable answer: {exc}"))
                continue
            try:
                mask = self._segment(pil, parsed, height, width, state)
            except Exception as exc:  # upstream drops such samples silently; we record them as failed
                out.append(Prediction(mask=None, text=text, reasoning=reasoning, answer=parsed.answer,
                                      parse_status=ParseStatus.OK, error=f"SAM2 failed: {type(exc).__name__}: {exc}"))
                continue
            out.append(Prediction(mask=masks.encode(mask), box=parsing.union_box(parsed.prompts), text=text,
                                  reasoning=reasoning, answer=parsed.answer, parse_status=ParseStatus.OK))
        return out

    def stats(self) -> dict[str, float]:
        """Cumulative counters since construction (LLM forwards include the prefill)."""
        return dict(self._counters)


class VisionReasonerAdapter(SegZeroAdapter):
    """VisionReasoner-7B: the multi-object prompt and parser, 2048 new tokens, SAM2 in float32."""

    info: ClassVar[AdapterInfo] = _info(
        "visionreasoner",
        "VisionReasoner (Qwen2.5-VL-7B multi-object reasoning -> JSON boxes+points -> SAM2-L), segmentation task forced",
        MODELS["visionreasoner"])
    VARIANT: ClassVar[dict[str, Any]] = {
        **SegZeroAdapter.VARIANT,
        "model_path": MODELS["visionreasoner"],
        "prompt": "multi",  # evaluation_visionreasoner.py / infer_multi_object.py
        "max_new_tokens": 2048,
        "sam_bf16_autocast": False,  # VisionReasoner's generate_masks runs SAM without autocast
    }


class SegZeroSingleAdapter(SegZeroAdapter):
    """The older name of ``segzero``'s pairing (Seg-Zero-7B, single-object prompt: one box, two points)."""

    info: ClassVar[AdapterInfo] = _info(
        "segzero-single", "Seg-Zero-7B with its single-object prompt (one box, two points); the same as segzero",
        MODELS["segzero-single"])
    VARIANT: ClassVar[dict[str, Any]] = {**SegZeroAdapter.VARIANT, "prompt": "single"}


class SegZeroReasonSegAdapter(SegZeroAdapter):
    """What Seg-Zero 42a3345 ``evaluation_scripts/eval_reasonseg.sh`` runs: ``evaluation.py`` (the single-object
    prompt and parser) with ``Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest``, 1024 new tokens, SAM2-L under bf16 autocast."""

    info: ClassVar[AdapterInfo] = _info(
        "segzero-reasonseg",
        "Seg-Zero as eval_reasonseg.sh runs it: Seg-Zero-7B-Best-on-ReasonSegTest, single-object prompt (one box, two points)",
        MODELS["segzero-reasonseg"])
    VARIANT: ClassVar[dict[str, Any]] = {**SegZeroAdapter.VARIANT, "prompt": "single",
                                         "model_path": MODELS["segzero-reasonseg"]}


def _has_flash_attn() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def _with_seconds(p: Prediction, seconds: float) -> Prediction:
    from dataclasses import replace

    return replace(p, seconds=seconds)
