"""SA-Co/Gold data in its real on-disk format, generated from a seed, and instance predictions for it.

Per subset, three annotator files ``gold_<subset>_merged_{a,b,c}_release_test.json`` (COCO style: ``images``
are image-phrase pairs with ``text_input``, ``is_instance_exhaustive``, ``is_pixel_exhaustive``;
``annotations`` are instance masks) and small JPEGs, in the layout of ``harness data layout saco-gold``.
What the files hold, on purpose: positive and negative phrases, a crowded image (a dozen instances), an
image whose every phrase is negative, annotators who jitter borders, miss an instance, merge several into a
crowd segment (on the crowded image's negative phrase too: a crowd segment alone), disagree on whether the
phrase is there at all, or mark a pair not instance-exhaustive; masks as compressed RLE, uncompressed RLE
and polygons.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from helper_datasets import jpeg, rle_of
from pycocotools import mask as mask_utils

ANNOTATORS = ("a", "b", "c")
SUBSETS = {"crowded": "metaclip", "sa1b": "sa1b"}  # subset -> image folder
Rect = tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive ends)


@dataclass
class SacoData:
    root: Path
    suite: Path
    # split -> pair id -> the pair's base instances (before each annotator's changes), for predictions
    truth: dict[str, dict[int, list[Rect]]] = field(default_factory=dict)
    sizes: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # split -> pairs

    def annotation_files(self, split: str) -> list[Path]:
        return [self.root / "saco-gold" / "annotations" / f"gold_{split}_merged_{a}_release_test.json" for a in ANNOTATORS]


def _mask(h: int, w: int, rects: list[Rect]) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    for y0, x0, y1, x1 in rects:
        m[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    return m


def _jitter(r: Rect, rng: np.random.Generator, h: int, w: int, by: int = 1) -> Rect:
    y0, x0, y1, x1 = (int(v + rng.integers(-by, by + 1)) for v in r)
    y0, x0 = min(max(0, y0), h - 2), min(max(0, x0), w - 2)
    return (y0, x0, min(max(y0 + 1, y1), h), min(max(x0 + 1, x1), w))


def _pairs_of_image(i: int, h: int, w: int, rng: np.random.Generator) -> list[tuple[str, list[Rect]]]:
    """(phrase, base instances) of one image: image 0 crowded, image 1 with no instance of any phrase."""
    if i == 0:
        grid = [(2 + 6 * r, 2 + 6 * c, 6 + 6 * r, 6 + 6 * c) for r in range(3) for c in range(4)]
        return [("bead", grid), ("giraffe", [])]
    if i == 1:
        return [("cat", []), ("dog", [])]
    rects = []
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        rects.append((y0, x0, y0 + int(rng.integers(4, 9)), x0 + int(rng.integers(4, 9))))
    return [(f"thing {i}", rects), (f"absent {i}", [])]


def _segmentation(m: np.ndarray, rect: Rect, form: str) -> Any:
    if form == "polygon":
        y0, x0, y1, x1 = rect
        return [[x0, y0, x1, y0, x1, y1, x0, y1]]
    if form == "uncompressed":
        flat = m.flatten(order="F").astype(np.uint8)
        runs, current, n = [], 0, 0
        for v in flat:
            if v != current:
                runs.append(n)
                current, n = v, 0
            n += 1
        runs.append(n)
        return {"size": [m.shape[0], m.shape[1]], "counts": [int(r) for r in runs]}
    return rle_of(m)


def write_saco(root: Path, seed: int = 0, images: int = 7) -> SacoData:
    """Both subsets under ``root`` and a suite file for them (official counts = the pairs written)."""
    rng = np.random.default_rng(seed)
    data = SacoData(root=root, suite=root / "saco-mini.yaml")
    for split, folder in SUBSETS.items():
        files: dict[str, dict[str, Any]] = {a: {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
                                            for a in ANNOTATORS}
        truth: dict[int, list[Rect]] = {}
        sizes: dict[int, tuple[int, int]] = {}
        pid = 1000 * (1 + list(SUBSETS).index(split))
        ann_id = 1
        for i in range(images):
            h, w = (26, 30) if i == 0 else (int(rng.integers(20, 36)), int(rng.integers(24, 44)))
            name = f"{i % 3}/{split}_{i:04d}.jpg"
            jpeg(root / "saco-gold" / "images" / folder / name, h, w, seed=seed * 100 + i)
            for phrase, base in _pairs_of_image(i, h, w, rng):
                pid += 1
                truth[pid], sizes[pid] = base, (h, w)
                drops_all = i == 3 and phrase.startswith("thing")  # annotator b says the phrase is not there
                for a in ANNOTATORS:
                    exhaustive = not (i == 4 and a == "b" and phrase.startswith("thing"))
                    files[a]["images"].append({"id": pid, "file_name": name, "text_input": phrase, "width": w, "height": h,
                                               "queried_category": "0", "is_instance_exhaustive": int(exhaustive),
                                               "is_pixel_exhaustive": int(exhaustive or a != "b")})
                    rects = [] if (a == "b" and drops_all) else [_jitter(r, rng, h, w) for r in base]
                    if a == "b" and len(rects) > 1 and rng.random() < 0.5:
                        rects = rects[1:]  # b misses one
                    crowd: set[int] = set()
                    if a == "c" and i == 0:  # c merges the first row of the crowd into one crowd segment
                        rects = [(2, 2, 6, 24), *rects[4:]]
                        crowd = {0}
                    for k, r in enumerate(rects):
                        m = _mask(h, w, [r])
                        form = "polygon" if a == "b" and k == 0 else "uncompressed" if a == "c" and k == 1 else "rle"
                        files[a]["annotations"].append({"id": ann_id, "image_id": pid, "category_id": 1, "area": int(m.sum()),
                                                        "bbox": [r[1] / w, r[0] / h, (r[3] - r[1]) / w, (r[2] - r[0]) / h],
                                                        "segmentation": _segmentation(m, r, form), "iscrowd": int(k in crowd),
                                                        "source": "manual"})
                        ann_id += 1
        for a in ANNOTATORS:
            path = root / "saco-gold" / "annotations" / f"gold_{split}_merged_{a}_release_test.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(files[a]))
        data.truth[split], data.sizes[split], data.counts[split] = truth, sizes, len(truth)
    data.suite.write_text(textwrap.dedent(f"""\
        name: saco-mini
        version: 1
        source:
          format: saco
          splits:
            crowded: {{subset: crowded}}
            sa1b: {{subset: sa1b, image_dir: saco-gold/images/sa1b}}
        splits:
          crowded: {{counts: {{expressions: {data.counts['crowded']}}}}}
          sa1b: {{counts: {{expressions: {data.counts['sa1b']}}}}}
        average: [crowded, sa1b]
        conventions: {{scoring: instances, empty_union: one, gt_overlap: binarise}}
        published:
          - {{model: "SAM 3", split: average, metric: cgf1, value: 54.06, source: "sam3 gold README"}}
          - {{model: "SAM 3", split: crowded, metric: il_mcc, value: 0.9, source: "sam3 gold README"}}
        """))
    return data


def predictions(data: SacoData, seed: int = 1, leave_out: int = 1) -> dict[str, dict[str, Any]]:
    """Replay lines (id -> record) with instances: jittered true instances, duplicates, spurious ones, scores on
    both sides of 0.5, an empty mask, negatives with false positives; the first ``leave_out`` pairs of each
    split get no line (a failed prediction, upstream's "no prediction for this pair")."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, Any]] = {}
    for split, truth in data.truth.items():
        for n, (pid, base) in enumerate(truth.items()):
            if n < leave_out:
                continue
            h, w = data.sizes[split][pid]
            found: list[dict[str, Any]] = []
            for r in base:
                if rng.random() < 0.85:
                    near = r if rng.random() < 0.3 else _jitter(r, rng, h, w)
                    found.append({"mask": rle_of(_mask(h, w, [near])), "score": float(rng.uniform(0.3, 1.0))})
                if rng.random() < 0.1:  # the same instance twice
                    found.append({"mask": rle_of(_mask(h, w, [r])), "score": float(rng.uniform(0.5, 1.0))})
            for _ in range(int(rng.integers(0, 3))):
                y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
                found.append({"mask": rle_of(_mask(h, w, [(y0, x0, y0 + 4, x0 + 5)])), "score": float(rng.uniform(0.2, 0.9))})
            if n == 2:
                found.append({"mask": rle_of(np.zeros((h, w), dtype=bool)), "score": 0.95})  # an empty instance
            order = rng.permutation(len(found))
            out[f"saco-gold/{split}/{pid}"] = {"instances": [found[k] for k in order]}
    return out


def coco_results(lines: dict[str, dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """The same predictions as upstream's evaluator reads them: COCO results of the subset, category 1, with
    the mask's box (SAM 3's dumps carry one; upstream's ``loadRes`` fails on the second annotator without)."""
    prefix = f"saco-gold/{split}/"
    return [{"image_id": int(sid[len(prefix):]), "category_id": 1, "segmentation": inst["mask"], "score": inst["score"],
             "bbox": [float(v) for v in mask_utils.toBbox({**inst["mask"], "counts": inst["mask"]["counts"].encode()})]}
            for sid, rec in lines.items() if sid.startswith(prefix) for inst in rec["instances"]]
