"""RefCOCO-M (Hugging Face ``moondream/refcoco-m``, MIT; UPSTREAM 2.5).

RefCOCO (UNC) val re-annotated with pixel-accurate masks, harmful samples removed: 1,190
images, 2,080 instance masks, 5,598 expressions. One row per image: ``image`` (embedded),
``image_id``, ``file_name``, ``samples`` = [{``id``, ``category``, ``supercategory``, ``label``,
``sentences`` [str], ``bbox`` (xywh), ``mask`` {``counts``, ``size``}}].

Layout: the dataset repository's parquet files, e.g.
``refcoco-m/data/validation-0000{0,1}-of-00002.parquet`` (``annotation`` may be a folder, a
glob, a ``save_to_disk`` folder, or a JSON/JSONL file of the same rows). Images embedded
in the rows are extracted once into the cache; rows without image bytes use
``{image_dir}/{file_name}`` (COCO train2014, the same images as RefCOCO val).

The card's protocol is mean IoU over every (image, sentence) pair: one sample per sentence,
id ``refcoco-m/val/{image_id}/{instance id}/{k}``. The mask is the given RLE (one mask per
instance, no polygons, no ignore region).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from harness import masks
from harness.data.sources import SourceError
from harness.data.sources.filesource import Expected, FileSource
from harness.data.sources.gt import canonical, xywh_to_xyxy
from harness.data.sources.refer import COCO_TRAIN2014
from harness.data.sources.rows import image_bytes, iter_rows, store_image, table_files
from harness.types import GroundTruth, Sample

PUBLISHED = "Hugging Face moondream/refcoco-m (data/validation-*.parquet; images embedded), MIT; copy Voxel51/RefCOCO-M"


class RefCocoMSource(FileSource):
    FORMAT = "refcoco_m"
    VERSION = 1
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "annotation": "refcoco-m/data/*.parquet",
        "image_dir": COCO_TRAIN2014,
        "hf_split": None,  # for a save_to_disk DatasetDict: e.g. validation
        "split": None,  # the name used in ids (default: the suite's split name)
    }

    def annotation_files(self, split: str) -> list[Path]:
        return table_files(self.root, self.spec(split)["annotation"])[1]

    def expected(self, split: str) -> list[Expected]:
        spec = self.spec(split)
        return [Expected(str(spec["annotation"]), "RefCOCO-M rows (parquet, images embedded)", PUBLISHED)]

    def build(self, split: str, spec: dict[str, Any]) -> tuple[list[Sample], list[str]]:
        kind, files = table_files(self.root, spec["annotation"])
        img_dir = self.path(spec["image_dir"])
        extracted = self.cache_dir / "images" / self.FORMAT / self.current_key
        out: list[Sample] = []
        for n, row in enumerate(iter_rows(kind, files, heavy={"image"}, hf_split=spec["hf_split"]), 1):
            where = f"{files[0].parent if len(files) > 1 else files[0]}: row {n}"
            if not isinstance(row.get("samples"), list) or "image_id" not in row:
                raise SourceError(f"{where} lacks 'image_id' or a 'samples' list")
            image_id = row["image_id"]
            name = str(row.get("file_name") or f"COCO_train2014_{int(image_id):012d}.jpg")
            data, _ = image_bytes(row.get("image"), where)
            image = str(store_image(data, extracted, name)) if data else str(img_dir / Path(name).name)
            for inst in row["samples"]:
                try:
                    h, w = (int(v) for v in inst["mask"]["size"])
                    mask = canonical(masks.validate(inst["mask"], h, w, f"{where}, instance {inst.get('id')}"), where)
                except (KeyError, TypeError, ValueError) as exc:
                    raise SourceError(f"{where}: instance {inst.get('id') if isinstance(inst, dict) else '?'} "
                                      f"lacks a mask with counts and size ({exc})") from exc
                gt = GroundTruth(mask=mask, box=xywh_to_xyxy(inst.get("bbox")))
                sentences = inst.get("sentences") or []
                if self.conventions.sample_unit != "sentence":
                    sentences = sentences[:1]
                for k, sent in enumerate(sentences):
                    meta = {"object": str(inst.get("id")), "instance_id": inst.get("id"), "image_id": image_id,
                            "category": inst.get("category"), "sent_index": k}
                    out.append(Sample(id=f"refcoco-m/{spec['split']}/{image_id}/{inst.get('id')}/{k}", image=image,
                                      expression=str(sent), gt=gt, dataset="refcoco-m", split=split, meta=meta))
        if not out:
            raise SourceError(f"{files[0]}: no RefCOCO-M sample found")
        return out, []
