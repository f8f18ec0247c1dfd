"""Upstream's evaluation path, run from the checkout: a RefCOCO tree on disk in REFER's format, ``ValDataset``,
``collate_fn`` and the model's own ``forward(inference=True)``, thresholded as ``eval.py validate`` does.

``ValDataset`` groups an image's sentences (every sentence of every ref of the image, in order) into one
item; ``collate_fn`` tokenises and pads them. Nothing here re-implements upstream: it calls it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from harness.types import Query
from PIL import Image

from harness_evfsam.model import UPSTREAM

FIRST_IMAGE_ID = 9000


def upstream_module(repo: Path, name: str) -> ModuleType:
    return UPSTREAM.import_module(repo, name)


def write_refcoco(root: Path, images: list[np.ndarray], sentences: list[list[list[str]]]) -> Path:
    """A RefCOCO (unc) val split in LISA's layout: image i (saved losslessly) with one ref per list of
    ``sentences[i]``; returns the data root (the folder holding ``refer_seg``)."""
    data = root / "refer_seg" / "refcoco"
    data.mkdir(parents=True)
    folder = root / "refer_seg" / "images" / "mscoco" / "images" / "train2014"
    folder.mkdir(parents=True)
    infos, anns, refs, sent_id = [], [], [], 0
    for i, (image, refs_of_image) in enumerate(zip(images, sentences)):
        image_id, (h, w) = FIRST_IMAGE_ID + i, image.shape[:2]
        name = f"COCO_train2014_{image_id:012d}.jpg"
        Image.fromarray(image).save(folder / name, format="PNG")  # cv2.imread reads it back bit for bit
        infos.append({"id": image_id, "height": h, "width": w, "file_name": name})
        for j, texts in enumerate(refs_of_image):
            ann_id = 100 * (i + 1) + j
            x0, y0 = 1 + j, 2 + j
            anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": [x0, y0, 10, 8],
                         "area": 80, "segmentation": [[x0, y0, x0 + 10, y0, x0 + 10, y0 + 8, x0, y0 + 8]]})
            sents = []
            for text in texts:
                sents.append({"sent": text, "raw": text, "sent_id": sent_id, "tokens": text.split()})
                sent_id += 1
            refs.append({"ref_id": ann_id, "ann_id": ann_id, "image_id": image_id, "category_id": 1, "split": "val",
                         "sentences": sents, "sent_ids": [s["sent_id"] for s in sents], "file_name": name})
    (data / "instances.json").write_text(json.dumps({"images": infos, "annotations": anns,
                                                     "categories": [{"id": 1, "name": "thing"}]}))
    with open(data / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    return root


def queries(sentences: list[list[str]], dataset: str = "refcoco") -> list[Query]:
    """One image's queries as the harness gives them: the sentences as stored, in ValDataset's order."""
    flat = [s for texts in sentences for s in texts]
    return [Query(id=f"{dataset}/unc/val/{k}", image="unused.png", expression=s, dataset=dataset, split="val") for k, s in enumerate(flat)]


def val_dataset(repo: Path, root: Path, model_type: str) -> Any:
    """``eval.py``'s ``ValDataset`` over the tree, with the transform eval.py gives it for ``model_type``."""
    dataset = upstream_module(repo, "utils.dataset")
    transforms = upstream_module(repo, "model.segment_anything.utils.transforms")
    transform = transforms.ResizeLongestSide(1024) if model_type == "ori" else dataset.Resize(1024)
    return dataset.ValDataset(str(root), "refcoco|unc|val", 224, model_type=model_type, transform=transform)


def collate(repo: Path, items: list[Any], tokenizer: Any) -> dict[str, Any]:
    return upstream_module(repo, "utils.dataset").collate_fn(items, tokenizer=tokenizer, local_rank=0)


def load_as_eval(repo: Path, checkpoint: Path, model_type: str, architecture: dict[str, Any]) -> tuple[Any, Any]:
    """The model and tokenizer as eval.py loads them (float32 on the CPU, no DDP), the tiny parts put in
    while the model class builds itself."""
    from transformers import AutoTokenizer

    from harness_evfsam.model import MODEL_MODULES, architecture_overrides, import_model_module

    module = import_model_module(repo, model_type)
    cls = getattr(module, MODEL_MODULES[model_type][1])
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), padding_side="right", use_fast=False)
    with architecture_overrides(module, architecture):
        model = cls.from_pretrained(str(checkpoint), low_cpu_mem_usage=True, torch_dtype=torch.float32)
    return model.eval(), tokenizer


def eval_masks(model: Any, batch: dict[str, Any]) -> list[np.ndarray]:
    """``validate``'s forward on a collate_fn batch: per image, ``pred_masks > 0`` as (n, h, w) bool."""
    keys = ("images", "images_evf", "input_ids", "attention_masks", "offset", "masks_list", "label_list", "resize_list", "inference")
    with torch.no_grad():
        out = model(**{k: batch[k] for k in keys})
    return [(m > 0).numpy() for m in out["pred_masks"]]
