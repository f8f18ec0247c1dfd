"""Ground truth built the way the reference evaluations build it, on RLE.

LISA (``utils/dataset.py``), GLaMM, LENS (``eval/evaluate_res2.py``) and EVF-SAM turn one
annotation into a target with ``pycocotools.mask.frPyObjects(ann["segmentation"], h, w)``,
decode every polygon and **sum** them into a uint8 map without binarising: a pixel inside
two polygons of the same object holds 2, which LISA's 2-bin histogram treats as neither
target nor background (UPSTREAM 1.2). Here the same sum is kept on RLE:
``mask`` = pixels with sum >= 1, ``overlap`` = pixels with sum >= 2 (None when empty);
the ``gt_overlap`` convention then decides what overlap pixels count as when scoring.

The polygons go through ``frPyObjects`` in one call, exactly as upstream, so pycocotools'
own quirks (a first polygon of exactly four numbers is read as a box) are reproduced too.
"""

from __future__ import annotations

from typing import Any

from pycocotools import mask as mask_utils

from harness.types import RLE, Box, GroundTruth


class SegmentationError(ValueError):
    """A segmentation that pycocotools cannot turn into a mask; the caller names the file."""


def _str_rle(obj: dict[str, Any]) -> RLE:
    counts = obj["counts"]
    return {"size": [int(v) for v in obj["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _coco(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _zeros(height: int, width: int) -> RLE:
    """An all-zero mask (one run of h*w zeros), without allocating the pixels."""
    return _str_rle(mask_utils.frPyObjects({"size": [height, width], "counts": [height * width]}, height, width))


def sum_rles(rles: list[dict[str, Any]], height: int, width: int) -> tuple[RLE, RLE | None]:
    """The sum of several 0/1 masks as (mask = sum >= 1, overlap = sum >= 2 or None).

    Runs on RLE: ``overlap`` is the union over k of (union of masks before k) ∧ mask k, which
    is exactly the set of pixels covered at least twice.
    """
    if not rles:
        return _zeros(height, width), None
    union = _coco(rles[0])
    if len(rles) == 1:
        return _str_rle(union), None
    overlap: dict[str, Any] | None = None
    for r in rles[1:]:
        rc = _coco(r)
        both = mask_utils.merge([union, rc], intersect=True)
        if mask_utils.area(both) > 0:
            overlap = both if overlap is None else mask_utils.merge([overlap, both], intersect=False)
        union = mask_utils.merge([union, rc], intersect=False)
    return _str_rle(union), (_str_rle(overlap) if overlap is not None else None)


def segmentation_rles(segmentation: Any, height: int, width: int) -> list[dict[str, Any]]:
    """One RLE per part of a COCO ``segmentation`` (polygon list, RLE dict, or list of RLE dicts)."""
    if isinstance(segmentation, dict):
        segmentation = [segmentation]
    if not isinstance(segmentation, list):
        raise SegmentationError(f"a segmentation must be a list of polygons or an RLE, got {type(segmentation).__name__}")
    if not segmentation:
        return []
    try:
        if isinstance(segmentation[0], dict):  # RLE(s): compressed strings or uncompressed count lists
            out = []
            for part in segmentation:
                if isinstance(part.get("counts"), list):
                    out.append(mask_utils.frPyObjects(part, height, width))
                else:
                    out.append(_coco(part))
            return out
        # Polygons: one frPyObjects call over the whole list, as LISA/LENS do.
        result = mask_utils.frPyObjects(segmentation, height, width)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise SegmentationError(f"segmentation cannot be rasterised ({type(exc).__name__}: {exc})") from exc
    return list(result) if isinstance(result, list) else [result]


def canonical(rle: Any, where: str) -> RLE:
    """``rle`` if its counts are exactly what pycocotools would write for its mask.

    Garbage in a counts string often still decodes to some mask; a round trip through
    decode/encode exposes it (every RLE pycocotools writes is canonical).
    """
    coco = _coco(rle)
    if mask_utils.encode(mask_utils.decode(coco))["counts"] != coco["counts"]:
        raise SegmentationError(f"{where}: RLE counts do not describe a {rle['size'][0]}x{rle['size'][1]} mask (corrupt counts)")
    return rle


def valid_polygons(segmentation: list[Any]) -> list[Any]:
    """ReLA/GSVA's filter for gRefCOCO: polygons with an even number >= 6 of coordinates."""
    return [p for p in segmentation if isinstance(p, list) and len(p) % 2 == 0 and len(p) >= 6]


def xywh_to_xyxy(bbox: Any) -> Box | None:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    x, y, w, h = (float(v) for v in bbox)
    return (x, y, x + w, y + h)


def ground_truth(segmentation: Any, height: int, width: int, box: Box | None = None, binarise: bool = False) -> GroundTruth:
    """A GroundTruth from one annotation's segmentation, LISA's polygon sum on RLE.

    ``binarise`` drops the overlap record (ReLA and GSVA binarise gRefCOCO targets; a run's
    ``gt_overlap`` convention can also do it at scoring time).
    """
    mask, overlap = sum_rles(segmentation_rles(segmentation, height, width), height, width)
    return GroundTruth(mask=mask, box=box, overlap=None if binarise else overlap)
