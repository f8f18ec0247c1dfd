"""SAM 3 through transformers' ``Sam3Model`` / ``Sam3Processor``: the expression is the text prompt.

SAM 3 returns every instance of a noun-phrase concept. Upstream (facebookresearch/sam3 99d02f2
``sam3/model/sam3_image_processor.py``, ``Sam3Processor._forward_grounding`` lines 183-222):

- score = sigmoid(pred_logits) * sigmoid(presence logit); an instance is kept when score > 0.5
  (``confidence_threshold=0.5``);
- boxes xyxy scaled by the original width/height;
- masks: the mask *logits* upsampled bilinearly (``align_corners=False``) to the original size,
  then sigmoid > 0.5.

transformers' ``post_process_instance_segmentation`` instead applies the sigmoid before the
upsampling and defaults to a 0.3 score threshold; this adapter follows upstream's order and
threshold on the model's raw outputs. Two modes: ``top1`` (the highest-scoring kept instance)
and ``union`` (the OR of all kept instances). No kept instance -> an empty mask (SAM 3's natural
"no target"). Every prediction also carries all kept instances (``Prediction.instances``: mask,
score, box), what a suite scored on instances (SA-Co/Gold's cgF1) scores, whatever the mode.
The image is encoded once per image (``get_vision_features``) and reused for every expression of
that image.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.modelkit.counters import update_peak_gpu_memory_mb
from harness.types import Box, Instance, ParseStatus, Prediction, Query
from PIL import Image

from harness_sam3 import manifest


def _sha256(tensor: Any) -> str:
    return hashlib.sha256(np.ascontiguousarray(tensor.detach().float().cpu().numpy()).tobytes()).hexdigest()


def _info(name: str, selection: str) -> AdapterInfo:
    """The adapters differ only in how they select among the kept instances."""
    return AdapterInfo(name=name, description=f"SAM 3 (transformers Sam3Model), expression as the text prompt, {selection}",
                       outputs=("mask", "box", "instances"), box_space="pixel", version="1", checkpoints=(manifest.CHECKPOINT,))


def kept_instances(outputs: Any, row: int, height: int, width: int, score_threshold: float) -> tuple[Any, Any, Any]:
    """Upstream's ``_forward_grounding`` on row ``row`` of a batched forward's raw outputs: the instances whose
    score sigmoid(class logit) x sigmoid(presence logit) is above ``score_threshold``, in the queries' order, as
    (mask probabilities N x H x W: the logits upsampled bilinearly to the original size, then the sigmoid;
    boxes N x 4, xyxy pixels; scores N)."""
    import torch

    scores = outputs.pred_logits[row].float().sigmoid()
    if outputs.presence_logits is not None:
        scores = scores * outputs.presence_logits[row].float().sigmoid()
    keep = torch.nonzero(scores > float(score_threshold)).flatten()
    logits = outputs.pred_masks[row, keep].float()
    probs = torch.nn.functional.interpolate(logits.unsqueeze(1), (height, width), mode="bilinear", align_corners=False)
    boxes = outputs.pred_boxes[row, keep].float() * torch.tensor([width, height, width, height], device=logits.device)
    return probs[:, 0].sigmoid(), boxes, scores[keep]


class Sam3Base(Adapter):
    """What every SAM 3 adapter shares: options checked against ``VARIANT``, transformers' Sam3Model and
    Sam3Processor loaded from ``model_path``, the processor's pixels and tokens, ``inputs``."""

    VARIANT: ClassVar[dict[str, Any]] = {
        "model_path": manifest.CHECKPOINT,
        "score_threshold": 0.5,  # upstream Sam3Processor confidence_threshold
        "mask_threshold": 0.5,  # on sigmoid(upsampled logits)
        "dtype": "auto",  # float32 everywhere (upstream runs float32 under an optional bf16 autocast)
    }

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.VARIANT))
        if unknown:
            raise TypeError(f"adapter {self.info.name!r}: unknown options {', '.join(unknown)}; known: {', '.join(self.VARIANT)}")
        self.options = {**self.VARIANT, **options}
        self.model: Any = None
        self.processor: Any = None
        self.device = "cpu"

    def load(self, device: str = "cpu") -> None:
        import torch
        from transformers import Sam3Model, Sam3Processor

        self.device = device
        dtype = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16}[self.options["dtype"]]
        self.model = Sam3Model.from_pretrained(self.options["model_path"], dtype=dtype).to(device).eval()
        self.processor = Sam3Processor.from_pretrained(self.options["model_path"])

    # ----------------------------------------------------------------------------- inputs
    def _pixels(self, image: np.ndarray) -> Any:
        batch = self.processor(images=Image.fromarray(image), return_tensors="pt")
        return batch["pixel_values"].to(self.device, dtype=self.model.dtype)

    def _text(self, expression: str | list[str]) -> Any:
        return self.processor(text=expression, return_tensors="pt").to(self.device)

    def inputs(self, image: np.ndarray, sample: Query) -> dict[str, Any]:
        """The exact text prompt and hashes of the preprocessed image and tokens."""
        pixels = self._pixels(image)
        text = self._text(sample.expression)
        return {"prompt": sample.expression, "pixel_values_shape": list(pixels.shape), "pixel_values_sha256": _sha256(pixels),
                "input_ids": text["input_ids"][0].tolist()}


class Sam3Adapter(Sam3Base):
    """SAM 3, highest-scoring instance (mode ``top1``)."""

    info: ClassVar[AdapterInfo] = _info("sam3", "highest-scoring instance")
    VARIANT: ClassVar[dict[str, Any]] = {
        "model_path": manifest.CHECKPOINT,
        "mode": "top1",  # or "union"
        **{k: v for k, v in Sam3Base.VARIANT.items() if k != "model_path"},
    }
    # Several images per call (the default predict_many: each image encoded once, then its expressions);
    # nothing is batched across images yet, so results never depend on a batch's company.
    multi_image = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options["mode"] not in ("top1", "union"):
            raise ValueError(f"mode must be 'top1' or 'union', got {self.options['mode']!r}")
        self._counters = {"images_encoded_by_segmenter": 0.0, "forward_passes": 0.0, "tokens_generated": 0.0,
                          "instances_kept": 0.0, "peak_gpu_memory_mb": 0.0}

    # ----------------------------------------------------------------------------- inference
    def _select(self, outputs: Any, height: int, width: int) -> tuple[np.ndarray, Box | None, tuple[Instance, ...]]:
        """Upstream's keep rule and mask threshold, then top-1 or union. Returns (mask, box, every kept instance)."""
        probs, boxes, scores = kept_instances(outputs, 0, height, width, float(self.options["score_threshold"]))
        if scores.numel() == 0:
            return np.zeros((height, width), dtype=bool), None, ()
        every = (probs > float(self.options["mask_threshold"])).cpu().numpy()
        boxes, kept = boxes.cpu(), scores.cpu()
        instances = tuple(Instance(mask=masks.encode(every[k]), score=float(kept[k]), box=tuple(float(v) for v in boxes[k]))  # type: ignore[arg-type]
                          for k in range(len(kept)))
        chosen = [int(kept.argmax())] if self.options["mode"] == "top1" else list(range(len(kept)))
        mask = every[chosen].any(axis=0)
        box = (float(boxes[chosen, 0].min()), float(boxes[chosen, 1].min()), float(boxes[chosen, 2].max()),
               float(boxes[chosen, 3].max()))
        return mask, box, instances

    def predict(self, image: np.ndarray, samples: Sequence[Query]) -> list[Prediction]:
        import torch

        height, width = image.shape[:2]
        start = time.perf_counter()
        out: list[Prediction] = []
        with torch.inference_mode():
            vision = self.model.get_vision_features(pixel_values=self._pixels(image))
            self._counters["images_encoded_by_segmenter"] += 1
            for s in samples:
                text = self._text(s.expression)
                outputs = self.model(vision_embeds=vision, input_ids=text["input_ids"], attention_mask=text["attention_mask"])
                self._counters["forward_passes"] += 1
                mask, box, instances = self._select(outputs, height, width)
                self._counters["instances_kept"] += len(instances)
                out.append(Prediction(mask=masks.encode(mask), box=box, answer=f"{len(instances)} instance(s) kept",
                                      parse_status=ParseStatus.NONE, instances=instances))
        update_peak_gpu_memory_mb(self._counters, self.device)
        seconds = (time.perf_counter() - start) / max(1, len(samples))
        return [replace(p, seconds=seconds) for p in out]

    def stats(self) -> dict[str, float]:
        """Cumulative counters; SAM 3 has no language model, so tokens_generated stays 0."""
        return dict(self._counters)


class Sam3UnionAdapter(Sam3Adapter):
    """SAM 3, union of all instances scored above the threshold (mode ``union``)."""

    info: ClassVar[AdapterInfo] = _info("sam3-union", "union of kept instances")
    VARIANT: ClassVar[dict[str, Any]] = {**Sam3Adapter.VARIANT, "mode": "union"}
