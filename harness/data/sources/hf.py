"""Hugging Face copies of the benchmarks, read from local files (UPSTREAM 2.6). Nothing is downloaded.

``path`` (relative to the data root) names a ``save_to_disk`` folder, a folder or glob of
parquet files (e.g. a snapshot of the dataset repository), or JSON rows. ``layout`` says
which copy it is:

- ``refcoco_benchmark`` (``jxu124/refcoco-benchmark``): one row per image with
  ``ref_list`` [{``ann_info`` (COCO annotation with full polygons), ``ref_info`` (REFER ref)}],
  ``image_info`` and ``image``. Faithful: ground truth is built exactly as from the REFER
  files (polygon sum) and ids equal the ``refer`` reader's, so results are comparable.
  A ref whose own ``split`` does not match the requested split is flagged (mixed splits).
- ``ricky`` (``Ricky06662/refcoco_*``, ``Ricky06662/ReasonSeg_*``): one row per object with one
  ``text`` and a dense boolean ``mask``. **Not faithful**: the boolean mask turned polygon
  overlaps into target (RefCOCO; LISA's sum leaves them out) and ReasonSeg's ignore
  regions into foreground (Seg-Zero ``create_reasonseg_hf.py``); one sentence per object.
  ``kind: reasonseg`` gives ids ``reasonseg/{split}/{image_id}`` like the ``reasonseg`` reader.
- ``lmms_lab`` (``lmms-lab/RefCOCO*``): one row per object, ``answer`` = its sentences,
  ``segmentation`` = **one flat polygon** (multi-part masks lost); its RefCOCO and RefCOCOg
  ``val`` splits hold 5,000 extra rows beyond the UNC/UMD val (mixed splits).

Unfaithful copies raise a loud ``DataWarning`` on every load and carry
``meta["unfaithful"]`` (and ``meta["mixed_split"]``) on every sample they affect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from harness import masks
from harness.data.sources import SourceError
from harness.data.sources.filesource import Expected, FileSource
from harness.data.sources.gt import SegmentationError, ground_truth, xywh_to_xyxy
from harness.data.sources.refer import COCO_TRAIN2014, TEXT_MODES, default_split_by, normalise, refer_split_match, sentences_of
from harness.data.sources.rows import bool_grid, header_size, image_bytes, iter_rows, py, store_image, table_files
from harness.types import GroundTruth, Sample

LAYOUTS = ("refcoco_benchmark", "ricky", "lmms_lab")
PUBLISHED = {
    "refcoco_benchmark": "Hugging Face jxu124/refcoco-benchmark (data/<dataset>_<splitBy>_<split>-*.parquet)",
    "ricky": "Hugging Face Ricky06662/<set> (data/test-*.parquet)",
    "lmms_lab": "Hugging Face lmms-lab/RefCOCO, RefCOCOplus, RefCOCOg (data/<split>-*.parquet)",
}
UNFAITHFUL = {
    "ricky_refcoco": "dense boolean mask: polygon overlaps count as target (LISA's polygon sum leaves them out); one sentence per object",
    "ricky_reasonseg": "dense boolean mask: ReasonSeg ignore regions became foreground (Seg-Zero create_reasonseg_hf.py); first text only",
    "lmms_lab": "one flat polygon per object: multi-part masks are lost",
}


class HFSource(FileSource):
    FORMAT = "hf"
    VERSION = 1
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "path": None,  # required: save_to_disk folder, parquet folder/glob, or JSON rows
        "layout": None,  # required: refcoco_benchmark | ricky | lmms_lab
        "kind": "refcoco",  # ricky only: refcoco | reasonseg
        "dataset": "refcoco",
        "split_by": None,
        "split": None,
        "hf_split": None,
        "text": "raw",
        "image_dir": COCO_TRAIN2014,
    }

    def spec(self, split: str) -> dict[str, Any]:
        spec = super().spec(split)
        if not spec["path"]:
            raise SourceError("source format 'hf' needs a 'path' (a saved dataset folder or parquet files under the data root)")
        if spec["layout"] not in LAYOUTS:
            raise SourceError(f"source parameter layout={spec['layout']!r} is not one of {', '.join(LAYOUTS)}")
        if spec["kind"] not in ("refcoco", "reasonseg"):
            raise SourceError(f"source parameter kind={spec['kind']!r} is not one of refcoco, reasonseg")
        if spec["text"] not in TEXT_MODES:
            raise SourceError(f"source parameter text={spec['text']!r} is not one of {', '.join(TEXT_MODES)}")
        spec["split_by"] = spec["split_by"] or default_split_by(spec["dataset"])
        return spec

    def annotation_files(self, split: str) -> list[Path]:
        return table_files(self.root, str(self.spec(split)["path"]))[1]

    def expected(self, split: str) -> list[Expected]:
        spec = self.spec(split)
        return [Expected(str(spec["path"]), f"Hugging Face copy ({spec['layout']})", PUBLISHED[spec["layout"]])]

    def _image(self, cell: Any, name: str, where: str, spec: dict[str, Any]) -> tuple[str, bytes | None]:
        data, _ = image_bytes(cell, where)
        if data:
            return str(store_image(data, self.cache_dir / "images" / self.FORMAT / self.current_key, name)), data
        return str(self.path(spec["image_dir"]) / Path(name).name), None

    def build(self, split: str, spec: dict[str, Any]) -> tuple[list[Sample], list[str]]:
        kind, files = table_files(self.root, str(spec["path"]))
        rows = iter_rows(kind, files, heavy={"image", "mask"}, hf_split=spec["hf_split"])
        origin = files[0].parent if len(files) > 1 else files[0]
        build = {"refcoco_benchmark": self._benchmark, "ricky": self._ricky, "lmms_lab": self._lmms}[spec["layout"]]
        out: list[Sample] = []
        for n, row in enumerate(rows, 1):
            out.extend(build(row, f"{origin}: row {n}", split, spec))
        if not out:
            raise SourceError(f"{origin}: no sample found")
        notes = []
        unfaithful = sorted({s.meta["unfaithful"] for s in out if "unfaithful" in s.meta})
        for reason in unfaithful:
            notes.append(f"{origin}: this Hugging Face copy cannot give the reference ground truth: {reason}. "
                         "Numbers on it are not comparable with the published ones; use the original files (harness data layout).")
        mixed = sum(1 for s in out if s.meta.get("mixed_split"))
        if mixed:
            notes.append(f"{origin}: {mixed} of {len(out)} samples come from another split than {spec['split']!r} (mixed splits)")
        return out, notes

    def _benchmark(self, row: dict[str, Any], where: str, split: str, spec: dict[str, Any]) -> list[Sample]:
        info = py(row.get("image_info")) or {}
        refs = py(row.get("ref_list"))
        if not isinstance(refs, list) or not isinstance(info, dict) or "height" not in info or "width" not in info:
            raise SourceError(f"{where}: a refcoco-benchmark row needs 'ref_list' and 'image_info' with height and width")
        h, w = int(info["height"]), int(info["width"])
        image_id = info.get("id")
        image, _ = self._image(row.get("image"), str(info.get("file_name") or f"COCO_train2014_{int(image_id or 0):012d}.jpg"),
                               where, spec)
        prefix = f"{spec['dataset']}/{spec['split_by']}/{spec['split']}"
        out = []
        for item in refs:
            ann, ref = item.get("ann_info") or {}, item.get("ref_info") or {}
            if "ref_id" not in ref or not isinstance(ref.get("sentences"), list):
                raise SourceError(f"{where}: a ref_list entry lacks ref_info.ref_id or ref_info.sentences")
            try:
                gt = ground_truth(ann.get("segmentation") or [], h, w, box=xywh_to_xyxy(ann.get("bbox")))
            except SegmentationError as exc:
                raise SourceError(f"{where}: ref {ref['ref_id']}: {exc}") from exc
            base: dict[str, Any] = {"object": str(ref["ref_id"]), "ref_id": ref["ref_id"], "ann_id": ref.get("ann_id"),
                                    "image_id": ref.get("image_id", image_id), "text": spec["text"]}
            if "split" in ref and not refer_split_match(str(ref["split"]), spec["split"]):
                base["mixed_split"] = True
            for sent_id, sent in sentences_of(ref, self.conventions.sample_unit):
                sid = f"{prefix}/{ref['ref_id']}" + (f"/{sent_id}" if sent_id is not None else "")
                out.append(Sample(id=sid, image=image, expression=normalise(sent, spec["text"]), gt=gt, dataset=spec["dataset"],
                                  split=split, meta={**base, "sent": sent.get("sent", ""), "sent_id": sent.get("sent_id")}))
        return out

    def _ricky(self, row: dict[str, Any], where: str, split: str, spec: dict[str, Any]) -> list[Sample]:
        try:
            h, w = int(py(row["img_height"])), int(py(row["img_width"]))
            text = str(py(row["text"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{where}: a Ricky06662 row needs img_height, img_width, text and mask ({exc})") from exc
        if row.get("mask") is None:
            raise SourceError(f"{where}: a Ricky06662 row needs a 'mask'")
        mask = masks.encode(bool_grid(row["mask"], h, w, where))
        image_id, ann_id = py(row.get("image_id")), py(row.get("ann_id"))
        image, _ = self._image(row.get("image"), f"{image_id}.jpg", where, spec)
        box = py(row.get("bbox"))
        kind = spec["kind"]
        if kind == "reasonseg":
            gt = GroundTruth(mask=mask, box=masks.mask_box(mask))
            sid, dataset = f"reasonseg/{spec['split']}/{image_id}", "reasonseg"
        else:
            gt = GroundTruth(mask=mask, box=tuple(float(v) for v in box) if isinstance(box, list) and len(box) == 4 else None)  # type: ignore[arg-type]
            sid, dataset = f"{spec['dataset']}/{spec['split_by']}/{spec['split']}/{image_id}/{ann_id}", spec["dataset"]
        meta = {"object": f"{image_id}/{ann_id}", "image_id": image_id, "ann_id": ann_id, "unfaithful": UNFAITHFUL[f"ricky_{kind}"]}
        return [Sample(id=sid, image=image, expression=text, gt=gt, dataset=dataset, split=split, meta=meta)]

    def _lmms(self, row: dict[str, Any], where: str, split: str, spec: dict[str, Any]) -> list[Sample]:
        qid = py(row.get("question_id"))
        seg, answers = py(row.get("segmentation")), py(row.get("answer"))
        if qid is None or not isinstance(seg, list) or not isinstance(answers, list):
            raise SourceError(f"{where}: an lmms-lab row needs question_id, segmentation (flat polygon) and answer (sentences)")
        image, data = self._image(row.get("image"), str(py(row.get("file_name")) or f"{qid}.jpg"), where, spec)
        if data is None:
            raise SourceError(f"{where}: an lmms-lab row needs its embedded image (the ground truth is sized from it)")
        h, w = header_size(data, where)
        try:
            gt = ground_truth([seg] if seg else [], h, w, box=xywh_to_xyxy(py(row.get("bbox"))))
        except SegmentationError as exc:
            raise SourceError(f"{where}: {exc}") from exc
        meta: dict[str, Any] = {"object": str(qid), "question_id": qid, "unfaithful": UNFAITHFUL["lmms_lab"]}
        if spec["split"] == "val" and spec["dataset"] in ("refcoco", "refcocog"):
            meta["mixed_split"] = True  # val = UNC/UMD val + 5,000 other rows (UPSTREAM 2.6)
        sents = answers if self.conventions.sample_unit == "sentence" else answers[:1]
        prefix = f"{spec['dataset']}/lmms/{spec['split']}/{qid}"
        return [Sample(id=f"{prefix}/{k}", image=image, expression=str(s), gt=gt, dataset=spec["dataset"], split=split,
                       meta={**meta, "sent_index": k}) for k, s in enumerate(sents)]
