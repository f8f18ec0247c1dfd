"""hustvl/LENS's own evaluation code as the tests' oracle (HARNESS_LENS_REPO).

``eval/evaluate_res2.py`` is imported from the checkout and run as ``eval.sh`` runs it, on CPU:

- ``ReferSegEvaluationSet`` reads a one-image RefCOCO tree written here (``refs(unc).p``,
  ``instances.json`` and the image, stored losslessly as PNG bytes under the ``.jpg`` name that
  ``Image.open`` reads by content) and gives upstream's LLM image, SAM input and chat messages;
- ``RefCOCOEvaluator.evaluate_single`` runs generation, the mask pass and the post-processing on
  that item with a model and processor given to it (its ``__init__``, which loads a checkpoint on
  CUDA, is skipped). Its hard-coded ``"cuda"`` becomes the CPU (``BatchFeature.to`` and
  ``Tensor.cuda``), and ``torch.histc`` of an integer tensor, which CUDA computes and the CPU
  refuses (``eval/utils.py intersectionAndUnionGPU``), is computed on its float copy (0/1 values:
  the same counts); nothing else is replaced. Spies record what it computes on the way (the
  ``generate`` inputs and output, the low-resolution logits, the upsampled masks) and hand the
  real values on unchanged.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from harness_lens.model import UPSTREAM

IMAGE_ID = 7


def evaluate_res2(repo: Path) -> ModuleType:
    """``eval/evaluate_res2.py`` of the checkout (its imports: ``src.open_r1``, ``eval.utils``, torchvision)."""
    return UPSTREAM.import_module(repo.resolve(), "eval.evaluate_res2")


def evaluate_reasonseg(repo: Path) -> ModuleType:
    """``eval/evaluate_reasonseg.py`` of the checkout. It imports ``evaluate_res2`` as a top-level module
    (``torchrun eval/evaluate_reasonseg.py`` puts ``eval/`` first on the path), so ``eval/`` goes on it too."""
    import sys

    folder = str((repo / "eval").resolve())
    if folder not in sys.path:
        sys.path.append(folder)
    return UPSTREAM.import_module(repo.resolve(), "eval.evaluate_reasonseg")


def write_reasonseg(root: Path, split: str, image: np.ndarray, text: str, is_sentence: bool = True) -> Path:
    """One ReasonSeg image of ``split`` in LISA's layout (PNG bytes under the ``.jpg`` name) and its LabelMe json."""
    h, w = image.shape[:2]
    folder = root / "reason_seg" / "ReasonSeg" / split
    folder.mkdir(parents=True)
    Image.fromarray(image).save(folder / "a.jpg", format="PNG")
    (folder / "a.json").write_text(json.dumps({"text": [text], "is_sentence": is_sentence, "shapes": [
        {"label": "target", "points": [[1, 1], [w // 2, 1], [w // 2, h // 2]]}]}))
    return root


def write_refcoco(root: Path, image: np.ndarray, refs: list[list[str]]) -> Path:
    """A RefCOCO (unc) val split of one image whose refs hold ``refs``' sentences, in LISA's layout."""
    h, w = image.shape[:2]
    data = root / "refer_seg" / "refcoco"
    data.mkdir(parents=True)
    images = root / "refer_seg" / "images" / "mscoco" / "images" / "train2014"
    images.mkdir(parents=True)
    Image.fromarray(image).save(images / f"COCO_train2014_{IMAGE_ID:012}.jpg", format="PNG")
    anns, out_refs, sent_id = [], [], 0
    for i, sentences in enumerate(refs):
        x0, y0 = 2 + i, 3 + i
        anns.append({"id": 100 + i, "image_id": IMAGE_ID, "category_id": 1, "iscrowd": 0, "bbox": [x0, y0, 20, 15],
                     "area": 300, "segmentation": [[x0, y0, x0 + 20, y0, x0 + 20, y0 + 15, x0, y0 + 15]]})
        sents = []
        for s in sentences:
            sents.append({"sent": s, "raw": s, "sent_id": sent_id, "tokens": s.split()})
            sent_id += 1
        out_refs.append({"ref_id": 100 + i, "ann_id": 100 + i, "image_id": IMAGE_ID, "category_id": 1, "split": "val",
                         "sentences": sents, "sent_ids": [s["sent_id"] for s in sents], "file_name": "x.jpg"})
    (data / "instances.json").write_text(json.dumps({
        "images": [{"id": IMAGE_ID, "height": h, "width": w, "file_name": f"COCO_train2014_{IMAGE_ID:012}.jpg"}],
        "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    with open(data / "refs(unc).p", "wb") as f:
        pickle.dump(out_refs, f)
    return root


def refcoco_items(module: ModuleType, root: Path, if_cot: bool = False) -> list[dict[str, Any]]:
    """``ReferSegEvaluationSet("refcoco.unc.val")`` items, one per ref, as ``evaluate_res2.py`` builds them."""
    dataset = module.ReferSegEvaluationSet("refcoco.unc.val", base_image_dir=str(root), coord_norm_type="qwen2p5vl",
                                           if_cot=if_cot)
    return [dataset[i] for i in range(len(dataset))]


@dataclass
class Evaluated:
    """What ``evaluate_single`` computed for one ref."""

    metrics: tuple  # its return value: intersection, union, acc_iou, n, avg_box_iou
    generate_inputs: dict[str, Any] = field(default_factory=dict)
    sequences: torch.Tensor | None = None  # generate's output (prompt + new tokens)
    low_res: list[torch.Tensor] = field(default_factory=list)  # each sentence's (256, 256) mask logits
    masks: list[np.ndarray] = field(default_factory=list)  # postprocess_masks(...) > 0 at the original size

    def new_texts(self, processor) -> list[str]:
        width = self.generate_inputs["input_ids"].shape[1]
        return processor.batch_decode(self.sequences[:, width:], skip_special_tokens=True)


def evaluate_single(module: ModuleType, model, processor, item: dict[str, Any], dtype=torch.float32) -> Evaluated:
    """Upstream's ``RefCOCOEvaluator.evaluate_single(item)`` on CPU, with spies on the way."""
    from transformers.feature_extraction_utils import BatchFeature

    evaluator = module.RefCOCOEvaluator.__new__(module.RefCOCOEvaluator)
    evaluator.model, evaluator.processor, evaluator.dtype = model, processor, dtype
    evaluator.args = SimpleNamespace(vis=False, model_path="")
    seen = Evaluated(metrics=())
    generate, postprocess = model.generate, model.postprocess_masks

    def spy_generate(*args, **kwargs):
        seen.generate_inputs = dict(kwargs)
        seen.sequences = generate(*args, **kwargs)
        return seen.sequences

    def spy_postprocess(low_res_mask, *args, **kwargs):
        out = postprocess(low_res_mask, *args, **kwargs)
        seen.low_res.append(low_res_mask[0, 0])
        seen.masks.append((out[0, 0] > 0).numpy())
        return out

    to = BatchFeature.to

    def to_cpu(self, *args, **kwargs):
        kwargs = {**kwargs, "device": "cpu"} if kwargs.get("device") == "cuda" else kwargs
        return to(self, *args, **kwargs)

    histc = torch.histc

    def histc_any_dtype(input, *args, **kwargs):
        return histc(input.float() if not input.is_floating_point() else input, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "histc", histc_any_dtype)
        patch.setattr(BatchFeature, "to", to_cpu)
        patch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
        patch.setattr(model, "generate", spy_generate)
        patch.setattr(model, "postprocess_masks", spy_postprocess)
        seen.metrics = tuple(evaluator.evaluate_single(item))
    return seen
