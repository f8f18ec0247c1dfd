"""GroundingSuite-Eval (hustvl/GroundingSuite ``GroundingSuite-Eval.jsonl``; UPSTREAM 2.3).

One JSON object per line: ``idx``, ``image_path`` (``unlabeled2017/000000000267.jpg``),
``class_id`` (1 stuff, 2 part, 3 multi-object, 4 single object), ``label`` (a phrase),
``caption`` (a sentence), ``box`` (pixel xyxy) and ``segmentation`` (COCO RLE, or a list of
RLEs that LENS ``eval/evaluate_res2_gs.py`` sums like polygons). Images are COCO
unlabeled2017, not shipped with the annotations.

Layout (LENS's ``./datasets`` root)::

    GroundingSuite-Eval.jsonl
    coco/unlabeled2017/000000000267.jpg      image = {image_root}/{image_path}

LENS's ``eval.sh`` passes ``--image_dir .../coco/unlabeled2017`` and joins ``image_path``,
which already starts with ``unlabeled2017/`` (a doubled folder); ``image_root`` here is
the parent folder, so the row's path is used as written.

``query`` chooses the expression: ``caption`` (default), ``label``, or ``lens_mangled``:
LENS's ``caption.replace('is', '').replace('are', '').lower()``, a substring deletion
("this" -> "th") needed to reproduce LENS's published numbers. Sample id ``gseval/{idx}``.
A split spec ``class_id: N`` keeps one category.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from harness import masks
from harness.data.sources import SourceError
from harness.data.sources.filesource import Expected, FileSource
from harness.data.sources.gt import canonical, segmentation_rles, sum_rles
from harness.types import GroundTruth, Sample

PUBLISHED = "hustvl/GroundingSuite repository (GroundingSuite-Eval.jsonl) or Hugging Face hustvl/GSEval"
IMAGES_PUBLISHED = "COCO 2017 unlabeled images (unlabeled2017.zip, cocodataset.org)"
CATEGORIES = {1: "stuff", 2: "part", 3: "multi", 4: "single"}
QUERIES = ("caption", "label", "lens_mangled")


def lens_mangled(caption: str) -> str:
    """LENS's query: substring deletion of 'is' and 'are', then lower case (kept as upstream does it)."""
    return caption.replace("is", "").replace("are", "").lower()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with path.open("r", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise SourceError(f"{path}: line {n} is not valid JSON ({exc})") from exc
                if not isinstance(row, dict):
                    raise SourceError(f"{path}: line {n} is not a JSON object")
                rows.append(row)
    except FileNotFoundError:
        raise SourceError(f"{path}: file does not exist") from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text ({exc})") from exc
    return rows


class GSEvalSource(FileSource):
    FORMAT = "gseval"
    VERSION = 1
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "annotation": "GroundingSuite-Eval.jsonl",
        "image_root": "coco",
        "query": "caption",
        "class_id": None,  # None = every row
    }

    def spec(self, split: str) -> dict[str, Any]:
        spec = super().spec(split)
        if spec["query"] not in QUERIES:
            raise SourceError(f"source parameter query={spec['query']!r} is not one of {', '.join(QUERIES)}")
        if spec["class_id"] is not None and spec["class_id"] not in CATEGORIES:
            raise SourceError(f"source parameter class_id={spec['class_id']!r} is not one of {', '.join(map(str, CATEGORIES))}")
        return spec

    def annotation_files(self, split: str) -> list[Path]:
        return [self.path(self.spec(split)["annotation"])]

    def expected(self, split: str) -> list[Expected]:
        spec = self.spec(split)
        return [Expected(Path(spec["annotation"]).as_posix(), "GroundingSuite-Eval rows (RLE masks)", PUBLISHED),
                Expected(f"{Path(spec['image_root']).as_posix()}/unlabeled2017/", "COCO unlabeled2017 images named in image_path",
                         IMAGES_PUBLISHED, "dir")]

    def build(self, split: str, spec: dict[str, Any]) -> tuple[list[Sample], list[str]]:
        path = self.path(spec["annotation"])
        image_root = self.path(spec["image_root"])
        out: list[Sample] = []
        for n, row in enumerate(read_jsonl(path), 1):
            where = f"{path}: line {n}"
            lacking = [k for k in ("idx", "image_path", "class_id", "caption", "segmentation") if k not in row]
            if lacking:
                raise SourceError(f"{where} lacks {', '.join(lacking)}")
            if spec["class_id"] is not None and row["class_id"] != spec["class_id"]:
                continue
            seg = row["segmentation"]
            first = seg[0] if isinstance(seg, list) and seg else seg
            if not isinstance(first, dict) or not isinstance(first.get("size"), list) or len(first["size"]) != 2:
                raise SourceError(f"{where}: 'segmentation' must be a COCO RLE with size [height, width]")
            h, w = (int(v) for v in first["size"])
            try:
                parts = [canonical(masks.validate(p, h, w, where), where) for p in (seg if isinstance(seg, list) else [seg])]
                mask, overlap = sum_rles(segmentation_rles(parts, h, w), h, w)
            except Exception as exc:  # pycocotools raises bare errors on garbage counts
                raise SourceError(f"{where}: 'segmentation' cannot be decoded ({exc})") from exc
            box = row.get("box")
            gt = GroundTruth(mask=mask, overlap=overlap,
                             box=tuple(float(v) for v in box) if isinstance(box, list) and len(box) == 4 else None)  # type: ignore[arg-type]
            caption = str(row["caption"])
            expression = {"caption": caption, "label": str(row.get("label", "")), "lens_mangled": lens_mangled(caption)}[spec["query"]]
            rel = Path(str(row["image_path"]))
            if rel.is_absolute() or ".." in rel.parts:
                raise SourceError(f"{where}: image_path {row['image_path']!r} must be a relative path inside the image root")
            meta = {"object": str(row["idx"]), "idx": row["idx"], "class_id": row["class_id"],
                    "category": CATEGORIES.get(row["class_id"], str(row["class_id"])), "label": row.get("label"), "query": spec["query"]}
            out.append(Sample(id=f"gseval/{row['idx']}", image=str(image_root / rel), expression=expression, gt=gt,
                              dataset="gseval", split=split, meta=meta))
        if not out:
            raise SourceError(f"{path}: no row for split {split!r}")
        return out, []
