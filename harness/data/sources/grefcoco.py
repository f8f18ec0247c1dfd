"""gRefCOCO (henghuiding/gRefCOCO, GRES CVPR 2023): multi-target and no-target expressions.

Files, under the data root (the layout LISA/GSVA read: ``refer_seg/grefcoco``)::

    refer_seg/grefcoco/grefs(unc).json     list of refs (``grefs(unc).p`` is read instead when present,
                                           through the restricted unpickler, as G_REFER prefers it)
    refer_seg/grefcoco/instances.json      COCO annotations
    refer_seg/images/mscoco/images/train2014/

A ref's ``ann_id`` is a list; ``[-1]`` marks a no-target expression: empty mask,
``no_target=True``. ``[]`` is not no-target: ReLA's loader marks a ref no-target only for
``[-1]`` (``assert ref_dict['ann_id'] == [-1]``) and scores ``[]`` as a targeted expression
with an empty target (IoU 0); it is read the same way, with a warning naming the ref.
The target of the others is the merge of all listed annotations, as ReLA builds
``gt_mask_merged`` (``grefer.getMaskByRef(merge=True)``; GSVA likewise):

- crowd annotations are left out (ReLA's loader and G_REFER skip ``iscrowd``; GSVA keeps
  them: ``crowd: include``);
- polygons with an odd or < 6 number of coordinates are dropped (ReLA, GSVA);
- the masks are summed and then binarised by ReLA/GSVA: the suite sets
  ``gt_overlap: binarise``; the overlap record is still stored.

Boxes: a single target keeps its COCO ``bbox``; a multi-target ref has no single box
(``meta["boxes"]`` lists them); a no-target ref has none.
Split selection is G_REFER's: equality of ``ref["split"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from harness.data.sources import SourceError
from harness.data.sources.filesource import Expected, FileSource
from harness.data.sources.gt import SegmentationError, segmentation_rles, sum_rles, valid_polygons, xywh_to_xyxy
from harness.data.sources.refer import (
    COCO_PUBLISHED,
    COCO_TRAIN2014,
    TEXT_MODES,
    check_refs,
    image_path,
    load_instances,
    memo_load,
    normalise,
    read_json,
    read_pickle,
)
from harness.types import GroundTruth, Sample

GREF_PUBLISHED = "henghuiding/gRefCOCO README (grefs(unc).json + instances.json; testA/testB held for CodaLab)"


class GRefCocoSource(FileSource):
    FORMAT = "grefcoco"
    VERSION = 1
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "dataset": "grefcoco",
        "split_by": "unc",
        "split": None,
        "text": "raw",
        "crowd": "exclude",
        "refer_root": "refer_seg",
        "image_dir": COCO_TRAIN2014,
        "refs_file": None,  # default: {refer_root}/{dataset}/grefs({split_by}).p if present, else .json
        "instances_file": None,
    }

    def spec(self, split: str) -> dict[str, Any]:
        spec = super().spec(split)
        if spec["text"] not in TEXT_MODES:
            raise SourceError(f"source parameter text={spec['text']!r} is not one of {', '.join(TEXT_MODES)}")
        if spec["crowd"] not in ("exclude", "include"):
            raise SourceError(f"source parameter crowd={spec['crowd']!r} is not one of exclude, include")
        return spec

    def _files(self, spec: dict[str, Any]) -> tuple[Path, Path]:
        base = Path(spec["refer_root"]) / spec["dataset"]
        if spec["refs_file"]:
            refs = self.path(spec["refs_file"])
        else:
            pickled = self.path(base / f"grefs({spec['split_by']}).p")
            refs = pickled if pickled.is_file() else self.path(base / f"grefs({spec['split_by']}).json")
        return refs, self.path(spec["instances_file"] or base / "instances.json")

    def annotation_files(self, split: str) -> list[Path]:
        return list(self._files(self.spec(split)))

    def expected(self, split: str) -> list[Expected]:
        spec = self.spec(split)
        base = Path(spec["refer_root"]) / spec["dataset"]
        return [
            Expected(Path(spec["refs_file"] or base / f"grefs({spec['split_by']}).json").as_posix(), "gRefCOCO refs (JSON)",
                     GREF_PUBLISHED),
            Expected(Path(spec["instances_file"] or base / "instances.json").as_posix(), "gRefCOCO COCO annotations", GREF_PUBLISHED),
            Expected(Path(spec["image_dir"]).as_posix() + "/", "COCO_train2014_{image_id:012d}.jpg", COCO_PUBLISHED, "dir"),
        ]

    def _load_refs(self, path: Path) -> list[dict[str, Any]]:
        return check_refs(memo_load(path, read_pickle if path.suffix == ".p" else read_json), path)

    def _target(self, ann_ids: list[int], inst: Any, h: int, w: int, spec: dict[str, Any],
                where: str) -> tuple[GroundTruth, dict[str, Any]]:
        rles: list[Any] = []
        boxes = []
        used = []
        for ann_id in ann_ids:
            ann = inst.ann(ann_id, where)
            if ann.get("iscrowd") and spec["crowd"] == "exclude":
                continue
            seg = ann.get("segmentation") or []
            if isinstance(seg, list) and seg and not isinstance(seg[0], dict):
                seg = valid_polygons(seg)
                if not seg:
                    continue  # ReLA: "ignore this instance"
            try:
                rles.extend(segmentation_rles(seg, h, w))
            except SegmentationError as exc:
                raise SourceError(f"{inst.path}: annotation {ann_id}: {exc}") from exc
            used.append(ann_id)
            boxes.append(xywh_to_xyxy(ann.get("bbox")))
        mask, overlap = sum_rles(rles, h, w)
        meta: dict[str, Any] = {}
        if len(boxes) > 1:
            meta["boxes"] = [list(b) if b else None for b in boxes]
        if len(used) != len(ann_ids):
            meta["ann_ids_used"] = used
        return GroundTruth(mask=mask, box=boxes[0] if len(boxes) == 1 else None, overlap=overlap), meta

    def build(self, split: str, spec: dict[str, Any]) -> tuple[list[Sample], list[str]]:
        refs_path, inst_path = self._files(spec)
        refs = self._load_refs(refs_path)
        inst = load_instances(inst_path)
        img_dir = self.path(spec["image_dir"])
        prefix = f"{spec['dataset']}/{spec['split_by']}/{spec['split']}"
        first_only = self.conventions.sample_unit != "sentence"
        out: list[Sample] = []
        notes: list[str] = []
        for ref in refs:
            if str(ref["split"]) != spec["split"]:
                continue
            where = f"{refs_path} (ref {ref['ref_id']})"
            im = inst.image(ref["image_id"], where)
            h, w = im["height"], im["width"]
            ann_ids = [int(a) for a in (ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]])]
            no_target = ann_ids == [-1]
            if not ann_ids:
                notes.append(f"{refs_path}: ref {ref['ref_id']} has ann_id [] (no annotation, not the no-target [-1]): "
                             "scored as ReLA scores it, as a targeted expression with an empty target")
            extra: dict[str, Any] = {}
            if no_target:
                gt = GroundTruth(mask=sum_rles([], h, w)[0])
            else:
                gt, extra = self._target(ann_ids, inst, h, w, spec, where)
                if "ann_ids_used" in extra and not extra["ann_ids_used"]:
                    notes.append(f"{refs_path}: ref {ref['ref_id']} is targeted but none of its annotations has a usable mask")
            image = str(image_path(img_dir, im, ref["image_id"]))
            sents = ref["sentences"][:1] if first_only else ref["sentences"]
            for i, sent in enumerate(sents):
                sent_id = sent.get("sent_id", i)
                meta = {"object": str(ref["ref_id"]), "ref_id": ref["ref_id"], "ann_ids": ann_ids, "image_id": ref["image_id"],
                        "sent_id": sent_id, "sent": sent.get("sent", ""), "text": spec["text"], **extra}
                sid = f"{prefix}/{ref['ref_id']}" if first_only else f"{prefix}/{ref['ref_id']}/{sent_id}"
                out.append(Sample(id=sid, image=image, expression=normalise(sent, spec["text"]), gt=gt,
                                  dataset=spec["dataset"], split=split, no_target=no_target, meta=meta))
        if not out:
            raise SourceError(f"{refs_path}: no ref has split {spec['split']!r}")
        return out, notes
