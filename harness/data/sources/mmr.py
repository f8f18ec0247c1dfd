"""MMR (jdg900/MMR, ICLR 2025): multi-target, object- and part-level reasoning segmentation on PACO-LVIS.

One JSON file per split, a list of images (``MMR_val.json``, ``MMR_test_mixed.json``,
``MMR_test_obj_only.json``, ``MMR_test_part_only.json``; the README's "Json Format")::

    {"file_name": "train2017/000000000009.jpg", "height": H, "width": W, "image_id": N,
     "questions": [str, ...],                 # one per question-answer pair
     "answers": [[ANN, ...], ...],            # per question, its targets (objects and parts)
     "text_answers": [str, ...], ...}
    ANN = {"segmentation": {"size": [H, W], "counts": RLE}, "bbox": [x, y, w, h],
           "category_name": "mug" | "mug:handle", "category_id": N, ...}

Images are COCO 2017 (PACO-LVIS), joined as upstream's ``ValDataset`` joins them:
``{image_root}/{file_name}`` with ``image_root`` = ``refer_seg/images/mscoco/images``.

**Protocol.** One sample per question, id ``mmr/{split}/{image_id}/{k}``, the question given as a
sentence (``is_sentence``: LISA's "{question} Please output segmentation mask." prompt). The ground
truth is the **union** of the question's targets (object and part masks together: a part lies inside
its object, so a sum would wrongly make the part "not target" under LISA's polygon rule). MMR's own
validation (``train_ds.py validate``, M²SA) scores every target separately, each against the mask of
the [SEG] token the teacher-forced answer text puts there: a protocol only a LISA-family model with
that answer text can follow. This suite's numbers are therefore the harness's one-mask-per-question
protocol (named ``mmr-union`` in the suite), comparable across models, and not the README's
per-target numbers, which the suite lists as published rows of that other protocol.

Meta for slices: ``targets`` (number of targets), ``parts`` (how many are parts: PACO names a part
``object:part``), ``granularity`` (object, part or mixed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from harness import masks
from harness.data.sources import SourceError
from harness.data.sources.filesource import Expected, FileSource
from harness.data.sources.gt import canonical, xywh_to_xyxy
from harness.types import GroundTruth, Sample

PUBLISHED = "jdg900/MMR README: Google Drive folder MMR/ (MMR_val.json, MMR_test_{mixed,obj_only,part_only}.json)"
IMAGES_PUBLISHED = "COCO 2017 images (train2017.zip, val2017.zip, cocodataset.org), the PACO-LVIS images"
FILES = {"val": "MMR_val.json", "test_mixed": "MMR_test_mixed.json", "test_obj_only": "MMR_test_obj_only.json",
         "test_part_only": "MMR_test_part_only.json"}


def _granularity(parts: int, targets: int) -> str:
    return "part" if parts == targets else "object" if parts == 0 else "mixed"


class MMRSource(FileSource):
    FORMAT = "mmr"
    VERSION = 1
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "annotation": None,  # default: MMR/{FILES[split]}
        "image_root": "refer_seg/images/mscoco/images",
        "split": None,  # which MMR file (val, test_mixed, test_obj_only, test_part_only); default: the suite's split name
    }

    def spec(self, split: str) -> dict[str, Any]:
        spec = super().spec(split)
        if spec["annotation"] is None:
            if spec["split"] not in FILES:
                raise SourceError(f"mmr split {spec['split']!r}: give source.annotation, or name one of {', '.join(FILES)}")
            spec["annotation"] = f"MMR/{FILES[spec['split']]}"
        return spec

    def annotation_files(self, split: str) -> list[Path]:
        return [self.path(self.spec(split)["annotation"])]

    def expected(self, split: str) -> list[Expected]:
        spec = self.spec(split)
        return [Expected(Path(spec["annotation"]).as_posix(), "MMR questions and answers (RLE per target)", PUBLISHED),
                Expected(f"{Path(spec['image_root']).as_posix()}/", "COCO 2017 images named in file_name (train2017/, val2017/)",
                         IMAGES_PUBLISHED, "dir")]

    def build(self, split: str, spec: dict[str, Any]) -> tuple[list[Sample], list[str]]:
        path = self.path(spec["annotation"])
        try:
            images = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SourceError(f"{path}: file does not exist") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise SourceError(f"{path}: not a JSON file ({exc})") from exc
        if not isinstance(images, list):
            raise SourceError(f"{path}: expected a JSON list of images, got {type(images).__name__}")
        image_root = self.path(spec["image_root"])
        out: list[Sample] = []
        for n, row in enumerate(images):
            where = f"{path}: image {n}"
            if not isinstance(row, dict):
                raise SourceError(f"{where} is not a JSON object")
            lacking = [k for k in ("file_name", "height", "width", "image_id", "questions", "answers") if k not in row]
            if lacking:
                raise SourceError(f"{where} lacks {', '.join(lacking)}")
            questions, answers = row["questions"], row["answers"]
            if not isinstance(questions, list) or not isinstance(answers, list) or len(questions) != len(answers):
                raise SourceError(f"{where}: 'questions' and 'answers' must be lists of equal length "
                                  f"(got {len(questions) if isinstance(questions, list) else questions!r} and "
                                  f"{len(answers) if isinstance(answers, list) else answers!r})")
            rel = Path(str(row["file_name"]))
            if rel.is_absolute() or ".." in rel.parts:
                raise SourceError(f"{where}: file_name {row['file_name']!r} must be a relative path inside the image root")
            h, w = int(row["height"]), int(row["width"])
            for k, (question, targets) in enumerate(zip(questions, answers)):
                out.append(self._sample(f"{where}, question {k}", split, row, k, str(question), targets, h, w,
                                        str(image_root / rel)))
        if not out:
            raise SourceError(f"{path}: no question for split {split!r}")
        return out, []

    @staticmethod
    def _sample(where: str, split: str, row: dict[str, Any], k: int, question: str, targets: Any, h: int, w: int,
                image: str) -> Sample:
        if not isinstance(targets, list) or not targets:
            raise SourceError(f"{where}: its answer must be a non-empty list of targets")
        rles, boxes, parts = [], [], 0
        for j, ann in enumerate(targets):
            seg = ann.get("segmentation") if isinstance(ann, dict) else None
            if not isinstance(seg, dict) or not isinstance(seg.get("counts"), (str, list)):
                raise SourceError(f"{where}, target {j}: 'segmentation' must be a COCO RLE")
            try:
                rles.append(canonical(masks.validate(seg, h, w, f"{where}, target {j}"), f"{where}, target {j}"))
            except masks.MaskError as exc:
                raise SourceError(str(exc)) from exc
            boxes.append(xywh_to_xyxy(ann.get("bbox")))
            parts += ":" in str(ann.get("category_name", ""))
        known = [b for b in boxes if b is not None]
        # The box of the union: the smallest box holding every target's box (when each has one).
        box = (min(b[0] for b in known), min(b[1] for b in known), max(b[2] for b in known), max(b[3] for b in known)) \
            if known and len(known) == len(boxes) else None
        gt = GroundTruth(mask=masks.union(rles, h, w), box=box)
        meta = {"is_sentence": True, "object": f"{row['image_id']}/{k}", "image_id": row["image_id"], "text_index": k,
                "targets": len(targets), "parts": parts, "granularity": _granularity(parts, len(targets))}
        return Sample(id=f"mmr/{split}/{row['image_id']}/{k}", image=image, expression=question, gt=gt, dataset="mmr",
                      split=split, meta=meta)
