"""Masks as COCO RLE end to end, through pycocotools (no hand-written run-length code).

Every RLE the harness stores or passes on has ``counts`` as a str so it is JSON-safe.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import numpy as np
from pycocotools import mask as mask_utils

from harness.errors import HarnessError
from harness.geometry import RLE, Box


class MaskError(HarnessError):
    """A mask that cannot be used: malformed RLE, or a size that does not match the image."""


def _to_coco(rle: RLE) -> dict[str, Any]:
    return {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}


def _from_coco(obj: dict[str, Any]) -> RLE:
    counts = obj["counts"]
    return {"size": [int(v) for v in obj["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def encode(mask: np.ndarray) -> RLE:
    """Encode a 2-D boolean/0-1 array (h, w) to RLE."""
    if mask.ndim != 2:
        raise MaskError(f"a mask must be 2-D (h, w), got shape {mask.shape}")
    return _from_coco(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False))))


def decode(rle: RLE) -> np.ndarray:
    """Decode RLE to a (h, w) bool array."""
    return cast(np.ndarray, mask_utils.decode(_to_coco(rle))).astype(bool)


@functools.lru_cache(maxsize=64)
def _constant(height: int, width: int, value: int) -> tuple[list[int], str]:
    rle = encode(np.full((height, width), value, dtype=np.uint8))
    return rle["size"], rle["counts"]


def empty(height: int, width: int) -> RLE:
    """An all-background mask (cached per size: predicting nothing must cost nothing)."""
    size, counts = _constant(height, width, 0)
    return {"size": list(size), "counts": counts}


def full(height: int, width: int) -> RLE:
    size, counts = _constant(height, width, 1)
    return {"size": list(size), "counts": counts}


def area(rle: RLE) -> int:
    return int(mask_utils.area(_to_coco(rle)))


# pycocotools' ``area`` of a list first builds ``np.array((n,), dtype=np.uint8)``, which numpy 2
# refuses for n > 255 (OverflowError): lists are passed in chunks of at most this many.
_AREA_CHUNK = 255


def areas(rles: list[RLE]) -> list[int]:
    """``area`` of several masks, a pycocotools call per 255 of them (its per-call cost is most of a 640x480 area)."""
    coco = [_to_coco(r) for r in rles]
    return [int(v) for k in range(0, len(coco), _AREA_CHUNK) for v in mask_utils.area(coco[k:k + _AREA_CHUNK])]


def intersection_area(a: RLE, b: RLE) -> int:
    """|a ∧ b| computed on the runs, without decoding."""
    return int(mask_utils.area(mask_utils.merge([_to_coco(a), _to_coco(b)], intersect=True)))


def union(rles: list[RLE], height: int, width: int) -> RLE:
    """The OR of several masks (an empty mask for none)."""
    if not rles:
        return empty(height, width)
    return _from_coco(mask_utils.merge([_to_coco(r) for r in rles], intersect=False))


def iou_matrix(a: list[RLE], b: list[RLE]) -> np.ndarray:
    """IoU of every mask of ``a`` (rows) with every mask of ``b`` (columns), pycocotools' ``iou`` on the runs
    (no crowd rule); an (len(a), len(b)) float64 array, empty when either list is."""
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    return np.asarray(mask_utils.iou([_to_coco(r) for r in a], [_to_coco(r) for r in b], [0] * len(b)), dtype=np.float64)


def compressed_counts(counts: str) -> list[int]:
    """Decode a compressed RLE string exactly as pycocotools' ``rleFrString`` does, in bounded time.

    Each count is 5-bit groups (char - 48), bit 0x20 continuing, bit 0x10 of the last group the
    sign; from the third count on, each is stored as the difference to the count two before.
    pycocotools does no checking: a character outside '0'..'o' or a dangling continuation
    makes it read past the string (``merge`` can then loop for ever), so we check first.
    """
    runs: list[int] = []
    x = k = 0
    more = False
    for pos, ch in enumerate(counts):
        c = ord(ch) - 48
        if not 0 <= c < 64:
            raise ValueError(f"character {ch!r} at position {pos} is not a compressed-RLE digit ('0' to 'o')")
        x |= (c & 0x1F) << (5 * k)
        more = bool(c & 0x20)
        k += 1
        if not more:
            if c & 0x10:
                x |= -1 << (5 * k)
            if len(runs) > 2:
                x += runs[-2]
            runs.append(x)
            x = k = 0
    if more:
        raise ValueError("the counts end in the middle of a number (truncated?)")
    return runs


_DIGITS = bytes(range(48, 112))  # '0'..'o'
# Counts at least this long are read with numpy: a real mask's are hundreds of characters, ~70 us in
# the loop above and about a third of that here; shorter ones cost the loop less than numpy's calls.
_VECTOR_FROM = 48


def _runs_total_fast(counts: str) -> tuple[int, bool] | None:
    """(sum of the runs, whether one is negative) of ``compressed_counts(counts)``, vectorised; None
    for counts it does not vouch for (malformed, which ``compressed_counts`` words; a number of more
    than 7 groups; over 8,192 numbers): with at most 7 groups a number (|x| < 2**35) and 8,192
    numbers, no sum below leaves int64 (each run is under 2**48, their total under 2**61)."""
    try:
        raw = counts.encode("ascii")
    except UnicodeEncodeError:
        return None
    if not raw or raw.translate(None, _DIGITS) or raw[-1] >= 80:  # a character outside '0'..'o'; a dangling continuation
        return None
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    more = c >= 32  # the group's continuation bit: the number goes on
    if not more.any():  # one group per number: the value is the group, its bit 0x10 the sign
        x = c - ((c & 0x10) << 1)
    else:
        ends = np.flatnonzero(~more)
        if ends.size > 8192:
            return None
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts + 1
        if lengths.max() > 7:
            return None
        place = np.arange(c.size) - np.repeat(starts, lengths)  # a group's place in its number
        # Each number's groups summed (exact in float64: below 2**35), less 2**(5 k) where its last group carries the sign.
        x = np.bincount(np.repeat(np.arange(ends.size), lengths), weights=((c & 0x1F) << (5 * place)).astype(np.float64))
        x = x.astype(np.int64) - ((c[ends] & 0x10) != 0) * np.left_shift(1, 5 * lengths)
    # From the third count on each is the difference to the count two before: the runs are x[0],
    # then running sums over the odd places and over the even places from the third.
    odd, even = np.cumsum(x[1::2]), np.cumsum(x[2::2])
    total = int(x[0]) + int(odd.sum()) + int(even.sum())
    lowest = min(int(x[0]), int(odd.min()) if odd.size else 0, int(even.min()) if even.size else 0)
    return total, lowest < 0


def validate(obj: Any, height: int, width: int, where: str) -> RLE:
    """Check that ``obj`` is an RLE of the image's size; return it normalised.

    ``where`` names the file or sample so the error says where the bad mask came from.
    """
    if not isinstance(obj, dict) or "size" not in obj or "counts" not in obj:
        raise MaskError(f"{where}: a mask must be a COCO RLE object with 'size' and 'counts', got {type(obj).__name__}")
    size = obj["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and isinstance(size[0], int) and isinstance(size[1], int)):
        raise MaskError(f"{where}: RLE 'size' must be [height, width], got {size!r}")
    if size[0] != height or size[1] != width:
        raise MaskError(f"{where}: RLE size {list(size)} does not match the image size [{height}, {width}]")
    counts = obj["counts"]
    if isinstance(counts, list):  # uncompressed RLE: convert through pycocotools
        rle = _from_coco(mask_utils.frPyObjects({"size": list(size), "counts": counts}, height, width))
    elif isinstance(counts, (str, bytes)):
        rle = {"size": [height, width], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
    else:
        raise MaskError(f"{where}: RLE 'counts' must be a string or a list of ints")
    checked = _runs_total_fast(rle["counts"]) if len(rle["counts"]) >= _VECTOR_FROM else None
    if checked is None:
        try:
            runs = compressed_counts(rle["counts"])
        except ValueError as exc:
            raise MaskError(f"{where}: RLE counts are malformed: {exc}") from None
        checked = sum(runs), bool(runs) and min(runs) < 0
    total, negative = checked
    # Runs that are all >= 0 and sum to h x w are exactly what pycocotools can decode (its
    # reader is the one above), so its area needs no second check: it is at most h x w.
    if negative or total != height * width:
        raise MaskError(f"{where}: RLE counts have runs summing to {total} pixels (negative: {negative}), "
                        f"not the image's {height} x {width} = {height * width}")
    return rle


def box_mask(box: Box, height: int, width: int) -> RLE:
    """The mask of a pixel box [x1, y1, x2, y2]: pixels whose centres lie inside it."""
    x1, y1, x2, y2 = box
    mask = np.zeros((height, width), dtype=np.uint8)
    c0, c1 = max(0, int(np.ceil(x1 - 0.5))), min(width, int(np.ceil(x2 - 0.5)))
    r0, r1 = max(0, int(np.ceil(y1 - 0.5))), min(height, int(np.ceil(y2 - 0.5)))
    if c1 > c0 and r1 > r0:
        mask[r0:r1, c0:c1] = 1
    return encode(mask)


def mask_box(rle: RLE) -> Box | None:
    """The tight pixel box [x1, y1, x2, y2] of a mask (None when empty)."""
    x, y, w, h = (float(v) for v in mask_utils.toBbox(_to_coco(rle)))
    if w <= 0 or h <= 0:  # toBbox gives [0, 0, 0, 0] for an empty mask (one pass, no separate area)
        return None
    return (x, y, x + w, y + h)


def box_iou(a: Box, b: Box) -> float:
    """IoU of two pixel boxes in continuous coordinates (no +1)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    ua = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0
