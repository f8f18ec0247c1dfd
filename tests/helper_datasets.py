"""Tiny datasets written in the real on-disk formats, and LISA's reference arithmetic.

Every builder writes under a given data root in the default layout of its reader (LISA's
README layout), with images as small JPEGs, and returns what a test needs to check.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

COCO_DIR = "refer_seg/images/mscoco/images/train2014"


def jpeg(path: Path, h: int, w: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def coco_name(image_id: int) -> str:
    return f"COCO_train2014_{image_id:012d}.jpg"


# ----------------------------------------------------------------------------- REFER format

REFER_IMAGES = {1: (40, 60), 2: (48, 32), 3: (30, 30)}  # id -> (h, w)
REFER_ANNS: dict[int, dict[str, Any]] = {
    # two overlapping polygons of one object: LISA's sum gives value 2 where they meet
    101: {"image_id": 1, "segmentation": [[5, 5, 30, 5, 30, 25, 5, 25], [20, 15, 45, 15, 45, 35, 20, 35]], "bbox": [5, 5, 40, 30]},
    102: {"image_id": 1, "segmentation": [[40.5, 2, 58, 2, 58, 12.7, 40.5, 12.7]], "bbox": [40.5, 2, 17.5, 10.7]},
    201: {"image_id": 2, "segmentation": [[2, 2, 20, 2, 11, 40]], "bbox": [2, 2, 18, 38]},
    301: {"image_id": 3, "segmentation": [[0, 0, 29, 0, 29, 29, 0, 29]], "bbox": [0, 0, 29, 29]},
    401: {"image_id": 3, "segmentation": [[3, 3, 9, 3, 9, 9, 3, 9]], "bbox": [3, 3, 6, 6]},
}


def _sent(sent_id: int, sent: str, raw: str | None = None) -> dict[str, Any]:
    return {"sent_id": sent_id, "sent": sent, "raw": raw if raw is not None else sent, "tokens": sent.split()}


REFER_REFS: list[dict[str, Any]] = [
    {"ref_id": 1, "ann_id": 101, "image_id": 1, "category_id": 1, "split": "val",
     "sentences": [_sent(11, "man on the left", "Man on the LEFT."), _sent(12, " The Tall Man ")]},
    {"ref_id": 2, "ann_id": 102, "image_id": 1, "category_id": 2, "split": "val", "sentences": [_sent(21, "red box")]},
    {"ref_id": 3, "ann_id": 201, "image_id": 2, "category_id": 3, "split": "testA",
     "sentences": [_sent(31, "triangle"), _sent(32, "pointy thing")]},
    {"ref_id": 4, "ann_id": 301, "image_id": 3, "category_id": 1, "split": "train", "sentences": [_sent(41, "square")]},
    {"ref_id": 5, "ann_id": 401, "image_id": 3, "category_id": 1, "split": "testB", "sentences": [_sent(51, "small square")]},
]
REFER_COUNTS = {"val": {"images": 1, "objects": 2, "expressions": 3}, "testA": {"images": 1, "objects": 1, "expressions": 2},
                "testB": {"images": 1, "objects": 1, "expressions": 1}}


def instances(images: dict[int, tuple[int, int]], anns: dict[int, dict[str, Any]]) -> dict[str, Any]:
    return {
        "images": [{"id": i, "height": h, "width": w, "file_name": coco_name(i)} for i, (h, w) in images.items()],
        "annotations": [{"id": a, "iscrowd": 0, "category_id": 1, "area": 1.0, **ann} for a, ann in anns.items()],
        "categories": [{"id": 1, "name": "thing"}],
    }


def write_refer(root: Path, dataset: str = "refcoco", split_by: str = "unc", images: bool = True) -> Path:
    """refer_seg/{dataset}/refs({split_by}).p + instances.json + COCO train2014 JPEGs."""
    d = root / "refer_seg" / dataset
    d.mkdir(parents=True, exist_ok=True)
    (d / f"refs({split_by}).p").write_bytes(pickle.dumps(REFER_REFS, protocol=2))
    (d / "instances.json").write_text(json.dumps(instances(REFER_IMAGES, REFER_ANNS)))
    if images:
        for i, (h, w) in REFER_IMAGES.items():
            jpeg(root / COCO_DIR / coco_name(i), h, w, seed=i)
    return d


def write_refer_many(root: Path, images: int = 8, seed: int = 5) -> int:
    """A larger REFER tree (refcoco, unc; every ref in ``val``) in the same on-disk format as ``write_refer``:
    ``images`` JPEGs of assorted sizes, one to three objects each (random quadrilaterals), one to four
    sentences per object, so that an image's sentences fill, span and straddle batches of 1, 3 and 8.
    Returns the number of sentences."""
    rng = np.random.default_rng(seed)
    sizes = {i: (int(rng.integers(24, 64)), int(rng.integers(24, 64))) for i in range(1, images + 1)}
    anns: dict[int, dict[str, Any]] = {}
    refs: list[dict[str, Any]] = []
    sent_id = 0
    for image_id, (h, w) in sizes.items():
        for _ in range(int(rng.integers(1, 4))):
            x1, y1 = float(rng.integers(0, w // 2)), float(rng.integers(0, h // 2))
            x2, y2 = float(rng.integers(w // 2 + 2, w)), float(rng.integers(h // 2 + 2, h))
            ann_id = 1000 + len(anns)
            anns[ann_id] = {"image_id": image_id, "segmentation": [[x1, y1, x2, y1 + 1, x2 - 1, y2, x1 + 1, y2 - 1]],
                            "bbox": [x1, y1, x2 - x1, y2 - y1]}
            sents = []
            for _ in range(int(rng.integers(1, 5))):
                sent_id += 1
                sents.append(_sent(sent_id, " ".join(rng.choice(["left", "red", "man", "the", "far", "cup", "dog"], 3))))
            refs.append({"ref_id": len(refs) + 1, "ann_id": ann_id, "image_id": image_id, "category_id": 1, "split": "val",
                         "sentences": sents})
    d = root / "refer_seg" / "refcoco"
    d.mkdir(parents=True, exist_ok=True)
    (d / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    (d / "instances.json").write_text(json.dumps(instances(sizes, anns)))
    for image_id, (h, w) in sizes.items():
        jpeg(root / COCO_DIR / coco_name(image_id), h, w, seed=image_id)
    return sent_id


def lisa_target(segmentation: list[list[float]], h: int, w: int) -> np.ndarray:
    """LISA utils/dataset.py: frPyObjects over the polygons, decode, sum over polygons, uint8."""
    m = mask_utils.decode(mask_utils.frPyObjects(segmentation, h, w))
    return np.sum(m, axis=2).astype(np.uint8)


# ----------------------------------------------------------------------------- LISA arithmetic


def lisa_iau(output: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """intersectionAndUnionGPU(K=2, ignore_index=255) on numpy, index 1 (foreground)."""
    o = output.astype(np.int64).ravel().copy()
    t = target.astype(np.int64).ravel()
    o[t == 255] = 255
    inter = o[o == t]
    a_i = np.histogram(inter, bins=2, range=(0, 1))[0]
    a_o = np.histogram(o, bins=2, range=(0, 1))[0]
    a_t = np.histogram(t, bins=2, range=(0, 1))[0]
    return float(a_i[1]), float((a_o + a_t - a_i)[1])


def lisa_ciou_giou(outputs: list[np.ndarray], targets: list[np.ndarray]) -> tuple[float, float]:
    si = su = acc = 0.0
    for o, t in zip(outputs, targets):
        i, u = lisa_iau(o, t)
        si, su = si + i, su + u
        acc += i / (u + 1e-5) + (1.0 if u == 0 else 0.0)
    return 100 * si / (su + 1e-10), 100 * acc / len(outputs)


# ----------------------------------------------------------------------------- ReasonSeg


def write_labelme(folder: Path, stem: str, h: int, w: int, shapes: list[dict[str, Any]], texts: list[str], is_sentence: bool,
                  seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    jpeg(folder / f"{stem}.jpg", h, w, seed)
    doc = {"text": texts, "is_sentence": is_sentence, "shapes": shapes, "imagePath": f"{stem}.jpg"}
    (folder / f"{stem}.json").write_text(json.dumps(doc))
    return folder / f"{stem}.json"


def shape(label: str, points: list[list[float]]) -> dict[str, Any]:
    return {"label": label, "points": points, "shape_type": "polygon"}


def write_reasonseg(root: Path) -> Path:
    base = root / "reason_seg" / "ReasonSeg"
    # a target with an ignore hole inside it, and a small target inside a larger ignore region
    write_labelme(base / "val", "a_img", 40, 50, [
        shape("target", [[2.7, 3.2], [40.9, 3.2], [40.9, 30.5], [2.7, 30.5]]),
        shape("ignore", [[10, 10], [20, 10], [20, 20], [10, 20]]),
        shape("flag", [[0, 0], [49, 0], [49, 39], [0, 39]]),
    ], ["what keeps the rain off? ", "second text"], False, seed=1)
    write_labelme(base / "val", "b_img", 36, 36, [
        shape("ignore", [[1, 1], [34, 1], [34, 34], [1, 34]]),
        shape("target", [[12, 12], [24, 12], [18, 26]]),
    ], ["the thing a person would sit on after a long walk"], True, seed=2)
    write_labelme(base / "test", "c_img", 30, 30, [shape("target", [[5, 5], [25, 5], [25, 25]])], ["short one"], False, seed=3)
    write_labelme(base / "test", "d_img", 30, 30, [shape("target", [[0, 0], [10, 0], [10, 10], [0, 10]])],
                  ["a long query that asks for reasoning"], True, seed=4)
    return base


def cv2_reference_map(json_path: Path, h: int, w: int) -> np.ndarray:
    """LISA's own ``utils/data_processing.py get_mask_from_json`` from the checkout ($HARNESS_LISA_REPO).

    Skips the test without a checkout (fails instead under HARNESS_REQUIRE_UPSTREAM=1, as CI runs);
    the file is loaded on its own, so LISA's generic ``utils`` package is never imported here."""
    from harness.modelkit.testing import checkout_or_skip, load_upstream_file
    from harness.modelkit.upstream import Upstream

    lisa = Upstream(name="LISA", repository="dvlab-research/LISA", env="HARNESS_LISA_REPO", revision="3cb2d43",
                    marker="utils/data_processing.py", top_level=(), isolation="")
    data_processing = load_upstream_file(checkout_or_skip(lisa), "utils/data_processing.py", "_lisa_data_processing")
    mask, _, _ = data_processing.get_mask_from_json(str(json_path), np.zeros((h, w, 3), dtype=np.uint8))
    return np.asarray(mask)


# ----------------------------------------------------------------------------- GroundingSuite


def rle_of(mask: np.ndarray) -> dict[str, Any]:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def write_gseval(root: Path) -> list[dict[str, Any]]:
    rows = []
    for idx, (cls, h, w) in enumerate([(1, 20, 30), (2, 20, 30), (4, 24, 16), (3, 24, 16)]):
        m = np.zeros((h, w), dtype=bool)
        m[2 + idx : 10 + idx, 3:12] = True
        name = f"unlabeled2017/{idx // 2:012d}.jpg"
        rows.append({"idx": idx, "image_path": name, "class_id": cls, "label": f"thing {idx}",
                     "caption": f"This is the area where thing {idx} is.", "box": [3.0, 2.0 + idx, 12.0, 10.0 + idx],
                     "segmentation": rle_of(m)})
        jpeg(root / "coco" / name, h, w, seed=idx // 2)
    (root / "GroundingSuite-Eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


# ----------------------------------------------------------------------------- gRefCOCO

GREF_IMAGES = {7: (30, 40), 8: (20, 20)}
GREF_ANNS: dict[int, dict[str, Any]] = {
    71: {"image_id": 7, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]], "bbox": [2, 2, 10, 10]},
    72: {"image_id": 7, "segmentation": [[8, 8, 20, 8, 20, 20, 8, 20], [1, 1, 3]], "bbox": [8, 8, 12, 12]},  # an invalid 3-number polygon
    73: {"image_id": 7, "segmentation": [[30, 20, 38, 20, 38, 28, 30, 28]], "bbox": [30, 20, 8, 8], "iscrowd": 1},
    81: {"image_id": 8, "segmentation": [[1, 1, 10, 1, 10, 10, 1, 10]], "bbox": [1, 1, 9, 9]},
}
GREF_REFS: list[dict[str, Any]] = [
    {"ref_id": 1, "ann_id": [71, 72, 73], "image_id": 7, "category_id": [1], "split": "val",
     "sentences": [_sent(100, "both squares", "Both squares")]},
    {"ref_id": 2, "ann_id": [-1], "image_id": 7, "category_id": [], "split": "val", "sentences": [_sent(101, "the purple cat")]},
    {"ref_id": 3, "ann_id": [81], "image_id": 8, "category_id": [1], "split": "val",
     "sentences": [_sent(102, "square"), _sent(103, "box")]},
    {"ref_id": 4, "ann_id": [81], "image_id": 8, "category_id": [1], "split": "testA", "sentences": [_sent(104, "square")]},
]


def write_grefcoco(root: Path) -> Path:
    d = root / "refer_seg" / "grefcoco"
    d.mkdir(parents=True, exist_ok=True)
    (d / "grefs(unc).json").write_text(json.dumps(GREF_REFS))
    inst = instances(GREF_IMAGES, GREF_ANNS)
    for a in inst["annotations"]:
        a["iscrowd"] = GREF_ANNS[a["id"]].get("iscrowd", 0)
    (d / "instances.json").write_text(json.dumps(inst))
    for i, (h, w) in GREF_IMAGES.items():
        jpeg(root / COCO_DIR / coco_name(i), h, w, seed=i)
    return d


# ----------------------------------------------------------------------------- jxu124/refcoco-benchmark rows


def jpeg_bytes(h: int, w: int, value: int = 90) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).save(b, format="JPEG")
    return b.getvalue()


def benchmark_rows(split: str = "val") -> list[dict[str, Any]]:
    """jxu124/refcoco-benchmark: one row per image, ref_list of {ann_info, ref_info}."""
    rows = []
    for image_id, (h, w) in REFER_IMAGES.items():
        refs = [r for r in REFER_REFS if r["image_id"] == image_id and r["split"] == split]
        if not refs:
            continue
        ref_list = [{"ann_info": {"id": r["ann_id"], "image_id": image_id, "iscrowd": 0, "category_id": 1, "area": 1.0,
                                  "bbox": [float(v) for v in REFER_ANNS[r["ann_id"]]["bbox"]],
                                  "segmentation": [[float(v) for v in p] for p in REFER_ANNS[r["ann_id"]]["segmentation"]]},
                     "ref_info": {**r, "file_name": coco_name(image_id), "sent_ids": [s["sent_id"] for s in r["sentences"]]}}
                    for r in refs]
        rows.append({"ref_list": ref_list, "image_info": {"id": image_id, "height": h, "width": w, "file_name": coco_name(image_id)},
                     "image": {"bytes": jpeg_bytes(h, w), "path": coco_name(image_id)}})
    return rows


# ----------------------------------------------------------------------------- RefCOCO-M rows


def refcoco_m_rows() -> list[dict[str, Any]]:
    rows = []
    for image_id, (h, w) in ((11, (20, 24)), (12, (16, 16))):
        b = io.BytesIO()
        Image.fromarray(np.full((h, w, 3), image_id, dtype=np.uint8)).save(b, format="JPEG")
        samples = []
        for k in range(2 if image_id == 11 else 1):
            m = np.zeros((h, w), dtype=bool)
            m[k * 3 : k * 3 + 5, 2:9] = True
            samples.append({"id": image_id * 10 + k, "image_id": image_id, "category": "person", "supercategory": "person",
                            "label": "person", "sentences": [f"person {k}", f"the person {k}"][: 1 + k],
                            "bbox": [2.0, float(k * 3), 7.0, 5.0], "mask": rle_of(m)})
        rows.append({"image": {"bytes": b.getvalue(), "path": coco_name(image_id)}, "image_id": image_id,
                     "file_name": coco_name(image_id), "samples": samples})
    return rows
