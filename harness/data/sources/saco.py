"""SA-Co/Gold (SAM 3's concept-segmentation benchmark; facebookresearch/sam3 ``scripts/eval/gold/README.md``).

Seven subsets, each annotated by three annotators, one COCO-style file per annotator::

    saco-gold/annotations/gold_<subset>_merged_{a,b,c}_release_test.json
    saco-gold/images/metaclip/<file_name>      six subsets (MetaCLIP images)
    saco-gold/images/sa1b/<file_name>          the SA-1B captioner subset

(``<subset>``: metaclip, sa1b, attributes, crowded, wiki_common, fg_food, fg_sports_equipment; the
annotations are on Hugging Face ``facebook/SACo-Gold`` and Roboflow, the images on Roboflow and, for
SA-1B, Meta's segment-anything downloads). A file's ``images`` are image–noun-phrase pairs (``id``,
``file_name``, ``text_input``, ``height``, ``width``, ``is_instance_exhaustive``,
``is_pixel_exhaustive``); its ``annotations`` are instance masks (``image_id`` = the pair, COCO
``segmentation``: RLE or polygons, ``iscrowd``). A pair without annotation is a negative phrase.

One sample per pair, id ``saco-gold/<split>/<pair id>``, in the first file's order; the expression is
``text_input`` as written (SAM 3's evaluation loader feeds it so). The three files must hold the same
pairs (same ids, file names and phrases). The ground truth holds the three annotations:

- ``instances``: per annotator (in the suite's order, a, b, c), the pair's instance masks in file order,
  crowd segments (``iscrowd`` 1) left out, since SA-Co's evaluator marks them ``ignore`` and drops them
  before matching. Only for pairs that every annotator marked ``is_instance_exhaustive``: upstream's
  ``CGF1Evaluator`` evaluates only those; any other pair is asked and scored by the mask metrics, and
  has no instance score (``instances`` None).
- ``mask``: the union of the first annotator's masks (crowd segments included), what the mask metrics
  and the report's gallery use; ``no_target`` when the first annotator has no annotation for the pair.

Images are read as stored (``exif: ignore``): SAM 3's loader opens them with PIL and ``convert("RGB")``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness import masks
from harness.data.sources import SourceError
from harness.data.sources.filesource import Expected, FileSource
from harness.data.sources.gt import SegmentationError, segmentation_rles
from harness.types import RLE, GroundTruth, Sample

PUBLISHED = "Hugging Face facebook/SACo-Gold (gated: accept its licence) or Roboflow universe.roboflow.com/sa-co-gold"
IMAGES_PUBLISHED = {
    "metaclip": "MetaCLIP images: Roboflow universe.roboflow.com/sa-co-gold/gold-metaclip-merged-a-release-test",
    "sa1b": "SA-1B images: sa_co_gold.tar from ai.meta.com/datasets/segment-anything-downloads "
            "(or Roboflow universe.roboflow.com/sa-co-gold/gold-sa-1b-merged-a-release-test)",
}


def annotation_file(subset: str, annotator: str) -> str:
    """The file name upstream's ``scripts/eval/gold/eval_sam3.py`` gives one annotator of one subset."""
    return f"gold_{subset}_merged_{annotator}_release_test.json"


def _read(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(images, annotations) of one annotator's file, checked for the shape the reader relies on."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise SourceError(f"{path}: file does not exist (see `harness data layout saco-gold`)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations", []), list):
        raise SourceError(f"{path}: not an SA-Co annotation file (a COCO-style object with 'images' and 'annotations' lists)")
    for k, img in enumerate(data["images"]):
        lacking = [key for key in ("id", "file_name", "text_input", "height", "width", "is_instance_exhaustive")
                   if not isinstance(img, dict) or key not in img]
        if lacking:
            raise SourceError(f"{path}: images[{k}] lacks {', '.join(lacking)}")
    return data["images"], data.get("annotations", [])


def _instance_mask(ann: dict[str, Any], height: int, width: int, where: str) -> RLE:
    """One annotation's mask as COCO's ``annToRLE`` makes it: an RLE as given, polygons rasterised and merged."""
    try:
        parts = segmentation_rles(ann["segmentation"], height, width)
        # each part checked before pycocotools merges it: it reads malformed counts past their end
        return masks.union([masks.validate(part, height, width, where) for part in parts], height, width)
    except (KeyError, SegmentationError) as exc:
        raise SourceError(f"{where}: no usable 'segmentation' ({exc})") from None
    except masks.MaskError as exc:
        raise SourceError(str(exc)) from None


class SacoSource(FileSource):
    FORMAT = "saco"
    VERSION = 1
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "annotation_dir": "saco-gold/annotations",
        "subset": None,  # the file names' <subset> (default: the suite's split name)
        "annotators": ["a", "b", "c"],  # the files' annotator letters; the first is the reference (mask, no-target)
        "image_dir": "saco-gold/images/metaclip",
    }

    def spec(self, split: str) -> dict[str, Any]:
        spec = super().spec(split)
        if not spec["subset"]:
            spec["subset"] = split
        annotators = spec["annotators"]
        if not isinstance(annotators, list) or not annotators or not all(isinstance(a, str) and a for a in annotators) \
                or len(set(annotators)) != len(annotators):
            raise SourceError(f"source parameter annotators={annotators!r} must list distinct annotator letters, e.g. [a, b, c]")
        return spec

    def annotation_files(self, split: str) -> list[Path]:
        spec = self.spec(split)
        return [self.path(spec["annotation_dir"]) / annotation_file(spec["subset"], a) for a in spec["annotators"]]

    def expected(self, split: str) -> list[Expected]:
        spec = self.spec(split)
        folder = Path(spec["annotation_dir"]).as_posix()
        images = Path(spec["image_dir"]).as_posix()
        kind = "sa1b" if "sa1b" in (spec["subset"], Path(images).name) else "metaclip"
        return [*(Expected(f"{folder}/{annotation_file(spec['subset'], a)}",
                           f"annotator {a}: image-phrase pairs and instance masks (COCO RLE)", PUBLISHED)
                  for a in spec["annotators"]),
                Expected(f"{images}/", "the images named by file_name", IMAGES_PUBLISHED[kind], "dir")]

    def build(self, split: str, spec: dict[str, Any]) -> tuple[list[Sample], list[str]]:
        files = self.annotation_files(split)
        image_dir = self.path(spec["image_dir"])
        read = [_read(path) for path in files]
        pairs = read[0][0]
        if not pairs:
            raise SourceError(f"{files[0]}: no image-phrase pair")
        by_id: dict[Any, dict[str, Any]] = {}
        for k, img in enumerate(pairs):
            if img["id"] in by_id:
                raise SourceError(f"{files[0]}: images[{k}]: pair id {img['id']!r} appears twice")
            by_id[img["id"]] = img
        annotations = [self._annotations(path, images, anns, by_id, files[0]) for path, (images, anns) in zip(files, read)]
        exhaustive = {img["id"] for img in pairs}
        for _, (images, _) in zip(files, read):
            exhaustive &= {img["id"] for img in images if img["is_instance_exhaustive"]}
        pixel = [{i["id"]: bool(i.get("is_pixel_exhaustive")) for i in images} for images, _ in read]
        out: list[Sample] = []
        for img in pairs:
            pid, h, w = img["id"], int(img["height"]), int(img["width"])
            rel = Path(str(img["file_name"]))
            if rel.is_absolute() or ".." in rel.parts:
                raise SourceError(f"{files[0]}: pair {pid!r}: file_name {img['file_name']!r} must be a relative path "
                                  "inside the image folder")
            per_annotator = [found.get(pid, []) for found in annotations]
            first = per_annotator[0]
            instances = tuple(tuple(m for m, crowd in found if not crowd) for found in per_annotator) if pid in exhaustive else None
            gt = GroundTruth(mask=masks.union([m for m, _ in first], h, w), instances=instances)
            meta = {"pair_id": pid, "file_name": str(img["file_name"]),
                    "instance_exhaustive": pid in exhaustive, "annotations": [len(found) for found in per_annotator],
                    "pixel_exhaustive": [by[pid] for by in pixel]}
            out.append(Sample(id=f"saco-gold/{split}/{pid}", image=str(image_dir / rel), expression=str(img["text_input"]), gt=gt,
                              dataset="saco-gold", split=split, no_target=not first, meta=meta))
        return out, []

    @staticmethod
    def _annotations(path: Path, images: Sequence[dict[str, Any]], anns: Sequence[Any], pairs: dict[Any, dict[str, Any]],
                     reference: Path) -> dict[Any, list[tuple[RLE, bool]]]:
        """Pair id -> [(instance mask, crowd)] of one annotator's file, in file order; the file must hold the
        reference file's pairs, with the same image and phrase."""
        ids = {img["id"]: img for img in images}
        if set(ids) != set(pairs):
            odd = sorted(map(str, set(ids) ^ set(pairs)))
            raise SourceError(f"{path}: its image-phrase pairs are not those of {reference.name} "
                              f"({len(odd)} differ, e.g. id {odd[0]})")
        for pid, img in ids.items():
            ref = pairs[pid]
            if (img["file_name"], img["text_input"]) != (ref["file_name"], ref["text_input"]):
                raise SourceError(f"{path}: pair {pid!r} is {img['file_name']!r} / {img['text_input']!r} here but "
                                  f"{ref['file_name']!r} / {ref['text_input']!r} in {reference.name}")
        out: dict[Any, list[tuple[RLE, bool]]] = {}
        for k, ann in enumerate(anns):
            where = f"{path}: annotations[{k}]"
            if not isinstance(ann, dict) or ann.get("image_id") not in ids:
                raise SourceError(f"{where}: image_id {ann.get('image_id') if isinstance(ann, dict) else ann!r} "
                                  "is not an image-phrase pair of the file")
            img = ids[ann["image_id"]]
            # COCOeval's ignore flag reads ``iscrowd`` (the README's prose says is_crowd; the files and upstream use iscrowd).
            out.setdefault(ann["image_id"], []).append(
                (_instance_mask(ann, int(img["height"]), int(img["width"]), where), bool(ann.get("iscrowd", 0))))
        return out
