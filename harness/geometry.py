"""The two shapes every room passes around, defined without numpy so that importing them is free:
a COCO run-length-encoded mask (``RLE``) and a pixel box (``Box``). ``harness.masks`` works on them
(through pycocotools); ``harness.types`` carries them in Samples and Predictions."""

from __future__ import annotations

from typing import TypedDict


class RLE(TypedDict):
    """A COCO run-length-encoded mask with string counts (JSON-safe)."""

    size: list[int]
    counts: str


Box = tuple[float, float, float, float]
