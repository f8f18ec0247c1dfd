"""The three records that carry everything: Sample, Prediction, SampleScore.

Masks are COCO RLE dicts (``{"size": [h, w], "counts": "<compressed string>"}``) at the
image's original resolution, boxes are pixel ``[x1, y1, x2, y2]``. Once a sample is scored
only its small ``SampleScore`` travels on: metrics are reductions over those.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, TypedDict


class RLE(TypedDict):
    """A COCO run-length-encoded mask with string counts (JSON-safe)."""

    size: list[int]
    counts: str


Box = tuple[float, float, float, float]


class ParseStatus(str, Enum):
    """What became of the model's text answer.

    ``ok``: the answer was parsed; ``failed``: the model was supposed to produce a parsable
    answer and did not; ``none``: the adapter has no text answer to parse (e.g. teacher
    forcing, or a model without a language head).
    """

    OK = "ok"
    FAILED = "failed"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """Ground truth of one sample at original resolution.

    ``mask`` is the union of the target's regions. ``overlap`` marks pixels covered by two
    or more of its polygons: LISA's loader sums polygons without binarising, so those pixels
    hold 2 and are neither target nor intersection (UPSTREAM 1.2); the ``gt_overlap``
    convention decides what they count as. ``ignore`` marks pixels excluded from scoring
    (value 255 in LISA's masks); it never intersects ``mask``.
    """

    mask: RLE
    box: Box | None = None
    ignore: RLE | None = None
    overlap: RLE | None = None

    @property
    def height(self) -> int:
        return int(self.mask["size"][0])

    @property
    def width(self) -> int:
        return int(self.mask["size"][1])


@dataclass(frozen=True, slots=True)
class Sample:
    """One expression to segment in one image.

    ``id`` is readable and stable across runs and machines (``shapes/val/0007/2``,
    ``refcoco/unc/val/<ref_id>/<sent_id>``). ``image`` is a path, decoded lazily by the
    runner once for all samples that share it.
    """

    id: str
    image: str
    expression: str
    gt: GroundTruth
    dataset: str
    split: str
    no_target: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Prediction:
    """What a model said about one sample.

    ``mask`` is ``None`` only when the prediction failed (``error`` says why). ``box`` is
    pixel xyxy at original resolution (the runner converts from the adapter's declared
    coordinate space). ``reasoning`` is the chain of thought (the ``<think>`` part) and
    ``answer`` the parsed answer text.
    """

    mask: RLE | None
    box: Box | None = None
    text: str | None = None
    reasoning: str | None = None
    answer: str | None = None
    parse_status: ParseStatus = ParseStatus.NONE
    error: str | None = None
    seconds: float | None = None

    @property
    def failed(self) -> bool:
        return self.mask is None

    def to_json(self) -> dict[str, Any]:
        # A shallow dict, not dataclasses.asdict: asdict deep-copies the RLE on every sample.
        out = {name: getattr(self, name) for name in _PREDICTION_FIELDS}
        out["parse_status"] = self.parse_status.value
        if self.box is not None:
            out["box"] = [float(v) for v in self.box]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prediction:
        box = data.get("box")
        return cls(
            mask=data.get("mask"),
            box=tuple(float(v) for v in box) if box is not None else None,  # type: ignore[arg-type]
            text=data.get("text"),
            reasoning=data.get("reasoning"),
            answer=data.get("answer"),
            parse_status=ParseStatus(data.get("parse_status", "none")),
            error=data.get("error"),
            seconds=data.get("seconds"),
        )


@dataclass(frozen=True, slots=True)
class SampleScore:
    """The small record metrics reduce over (UPSTREAM 1.6).

    ``intersection`` and ``union`` are after the suite's conventions (ignore pixels,
    polygon overlap); ``iou`` is the per-sample value that enters gIoU (after the
    empty-union rule) and is ``None`` when the sample is dropped from gIoU. ``counted_in_ciou``
    is False when the failure policy keeps the sample out of cIoU's sums.
    """

    intersection: int
    union: int
    gt_area: int
    pred_area: int
    iou: float | None
    gt_empty: bool
    pred_empty: bool
    failed: bool
    parse_failed: bool
    counted_in_ciou: bool = True
    box_iou: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SCORE_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SampleScore:
        return cls(**data)


# Field names once, not dataclasses.fields() on every record written (issue 14: engine overhead).
_PREDICTION_FIELDS = tuple(f.name for f in fields(Prediction))
_SCORE_FIELDS = tuple(f.name for f in fields(SampleScore))
