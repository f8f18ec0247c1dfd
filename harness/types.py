"""The records that carry everything: Sample (and the Query a model is given), Prediction, SampleScore.

Masks are COCO RLE dicts (``{"size": [h, w], "counts": "<compressed string>"}``) at the
image's original resolution, boxes are pixel ``[x1, y1, x2, y2]``. Once a sample is scored
only its small ``SampleScore`` travels on: metrics are reductions over those.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

# The mask and box types (harness/geometry.py), named here too, as the vocabulary; masks works on them.
from harness.geometry import RLE, Box


class ParseStatus(str, Enum):
    """What became of the model's text answer.

    ``ok``: the answer was parsed; ``failed``: the model was supposed to produce a parsable
    answer and did not; ``none``: the adapter has no text answer to parse (e.g. teacher
    forcing, or a model without a language head).
    """

    OK = "ok"
    FAILED = "failed"
    NONE = "none"


class PredictionStatus(str, Enum):
    """Whether the sample was predicted at all.

    ``predicted``: the model was asked (its mask, or ``None`` when it failed); ``not_drawn``:
    the protocol deliberately left the sample out (GLaMM's seeded draw of up to three
    sentences per image). A sample not drawn has no mask, is not a failure, and is kept out
    of ``n``, the failure count and every metric; results count it as ``n_not_drawn``.
    """

    PREDICTED = "predicted"
    NOT_DRAWN = "not_drawn"


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """Ground truth of one sample at original resolution.

    ``mask`` is the union of the target's regions. ``overlap`` marks pixels covered by two
    or more of its polygons: LISA's loader sums polygons without binarising, so those pixels
    hold 2 and are neither target nor intersection (UPSTREAM 1.2); the ``gt_overlap``
    convention decides what they count as. ``ignore`` marks pixels excluded from scoring
    (value 255 in LISA's masks); it never intersects ``mask``.

    ``instances``: for concept segmentation (SA-Co/Gold), each annotator's instance masks of the
    phrase in the image, one tuple per annotator, in the annotation file's order (crowd segments
    left out: SA-Co's evaluator neither matches nor misses them); ``None`` where the sample is not
    scored on instances (every referring suite, and an SA-Co pair some annotator did not annotate
    exhaustively). ``mask`` is then the first annotator's union, what mask metrics and the report use.
    """

    mask: RLE
    box: Box | None = None
    ignore: RLE | None = None
    overlap: RLE | None = None
    instances: tuple[tuple[RLE, ...], ...] | None = None

    @property
    def height(self) -> int:
        return int(self.mask["size"][0])

    @property
    def width(self) -> int:
        return int(self.mask["size"][1])

    @property
    def area(self) -> int:
        """The mask's pixel count (on its runs, not decoded); one read from the index cache knows it
        without its mask (``harness.data.sources.lazy_gt``)."""
        from harness import masks  # numpy and pycocotools: imported when an area is asked, not by `harness --help`

        return masks.area(self.mask)


# The metadata keys a model may be given (Sample.query keeps these and drops every other key).
# An allow-list, so that a key a new source adds stays with the referee until it is decided here.
# Each source's keys, decided:
QUERY_META: frozenset[str] = frozenset({
    "is_sentence",  # ReasonSeg: the query is a long sentence, not a phrase; LISA's prompt depends on it, as upstream
    "text",  # the name of the text normalisation the suite applied to the expression
    "query",  # GroundingSuite-Eval: which field (caption or label) the expression is
    "object",  # the ref/object a sentence is about, to group one ref's sentences (LENS's evaluate_res2 batches them);
               # the sample id names it too, and it carries no mask, box or class
    "image_id",  # the image's id in its dataset; the model is given the image itself
    "sent_id", "sent_index", "text_index",  # which of its ref's (image's) sentences this is; a seeded protocol draws by it
    "n_texts",  # ReasonSeg: how many texts the image has, a property of the queries, not of the answer
    "exif_orientation",  # the image file's EXIF orientation tag, a property of the file the model is given
})
# Never given (dropped): keys into an annotation file or generator, from which the answer can be looked up
# (ref_id, ann_id, instance_id, idx, question_id, and shapes' image_index; gRefCOCO's ann_ids is [-1] exactly when
# there is no target); the target's class (category, category_id, class_id, GSEval's label); what the ground
# truth looks like (boxes, ann_ids_used, empty_segmentation, box_from); shapes' kind ("no_target" when the shape is
# absent); the raw sentence and its siblings (sent, sent_ids), since the suite's text convention decides what the
# model reads; and provenance caveats for the report (unfaithful, mixed_split). Sample.no_target is never given.


@dataclass(frozen=True, slots=True)
class Query:
    """What a model is given for one sample: never its ground truth.

    ``id``, ``image`` (a path), ``expression``, ``dataset``, ``split`` and the metadata a model
    may use (the keys of ``QUERY_META``). Only an adapter that declares itself an oracle
    (``AdapterInfo.oracle``) is given the full Sample, and only in-process.
    """

    id: str
    image: str
    expression: str
    dataset: str
    split: str
    meta: dict[str, Any] = field(default_factory=dict)


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

    def query(self) -> Query:
        """The sample as a model is given it: no ground truth, no no-target flag, only the allowed metadata."""
        return Query(id=self.id, image=self.image, expression=self.expression, dataset=self.dataset, split=self.split,
                     meta={k: v for k, v in self.meta.items() if k in QUERY_META})


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance a model found: its mask (RLE at original resolution), its confidence, and optionally
    its box (pixel xyxy after the runner's conversion, like ``Prediction.box``)."""

    mask: RLE
    score: float
    box: Box | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mask": self.mask, "score": self.score}
        if self.box is not None:
            out["box"] = _box_json(self.box)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        box = data.get("box")
        return cls(mask=data["mask"], score=float(data["score"]), box=_box_of(box) if box is not None else None)


def _box_json(box: Box) -> list[float | None]:
    """A box as JSON: a non-finite coordinate is stored as null (JSON has no NaN) and read back as NaN."""
    return [float(v) if math.isfinite(v) else None for v in box]


def _box_of(data: Any) -> Box:
    return tuple(math.nan if v is None else float(v) for v in data)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Prediction:
    """What a model said about one sample.

    ``mask`` is ``None`` only when the prediction failed (``error`` says why) or the sample
    was not drawn (``status`` ``not_drawn``; ``error`` then says why it was left out). ``box`` is
    pixel xyxy at original resolution (the runner converts from the adapter's declared
    coordinate space). ``reasoning`` is the chain of thought (the ``<think>`` part) and
    ``answer`` the parsed answer text.

    ``instances``: every instance the model found (concept segmentation), besides or instead of
    ``mask``; ``None`` for a model that gives one mask. A prediction with instances and no mask is
    not a failure: where a suite scores one mask, the mask is the union of the instances whose score
    reaches the suite's ``instance_threshold`` (``harness.score.instances.scored_mask``).
    """

    mask: RLE | None
    box: Box | None = None
    text: str | None = None
    reasoning: str | None = None
    answer: str | None = None
    parse_status: ParseStatus = ParseStatus.NONE
    error: str | None = None
    seconds: float | None = None
    status: PredictionStatus = PredictionStatus.PREDICTED
    instances: tuple[Instance, ...] | None = None

    @property
    def not_drawn(self) -> bool:
        return self.status is PredictionStatus.NOT_DRAWN

    @property
    def failed(self) -> bool:
        return self.mask is None and self.instances is None and not self.not_drawn

    def to_json(self) -> dict[str, Any]:
        # A shallow dict, not dataclasses.asdict: asdict deep-copies the RLE on every sample.
        out = {name: getattr(self, name) for name in _PREDICTION_FIELDS}
        out["parse_status"] = self.parse_status.value
        if self.status is PredictionStatus.PREDICTED:
            del out["status"]  # the usual case stays off the logs and the pipe (and old logs read the same)
        else:
            out["status"] = self.status.value
        if self.box is not None:
            out["box"] = _box_json(self.box)
        if self.instances is None:
            del out["instances"]  # a one-mask model's line is as it always was
        else:
            out["instances"] = [i.to_json() for i in self.instances]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prediction:
        box = data.get("box")
        found = data.get("instances")
        return cls(
            mask=data.get("mask"),
            box=_box_of(box) if box is not None else None,
            instances=None if found is None else tuple(Instance.from_json(i) for i in found),
            text=data.get("text"),
            reasoning=data.get("reasoning"),
            answer=data.get("answer"),
            parse_status=ParseStatus(data.get("parse_status", "none")),
            error=data.get("error"),
            seconds=data.get("seconds"),
            status=PredictionStatus(data.get("status", "predicted")),
        )


# SA-Co's IoU thresholds, 0.50:0.05:0.95 exactly as COCOeval's ``Params`` builds them (the values are compared with >=).
# numpy.linspace(0.5, 0.95, 10) bit for bit (k * step + start, the endpoint exact), without importing numpy here.
IOU_THRESHOLDS: tuple[float, ...] = (*(0.5 + k * ((0.95 - 0.5) / 9) for k in range(9)), 0.95)


@dataclass(frozen=True, slots=True)
class InstanceMatch:
    """One sample's instances matched to its ground truth, as SA-Co's cgF1 counts them (harness/score/instances.py).

    ``n_dt``: the predicted instances that count (score at or above the suite's ``instance_threshold``);
    ``n_gt``: the ground-truth instances of ``annotator``, the annotator the oracle chose (0-based, in the
    suite's order of annotation files); ``tp``: at each of ``IOU_THRESHOLDS``, how many one-to-one matched
    pairs (the assignment of largest total IoU) have IoU at or above it. Everything cgF1, pmF1 and IL_MCC
    need is a sum over these (harness/score/cgf1.py): false positives are ``n_dt - tp``, misses ``n_gt - tp``.
    """

    n_dt: int
    n_gt: int
    annotator: int
    tp: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"n_dt": self.n_dt, "n_gt": self.n_gt, "annotator": self.annotator, "tp": list(self.tp)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceMatch:
        return cls(n_dt=int(data["n_dt"]), n_gt=int(data["n_gt"]), annotator=int(data["annotator"]),
                   tp=tuple(int(v) for v in data["tp"]))


@dataclass(frozen=True, slots=True)
class SampleScore:
    """The small record metrics reduce over (UPSTREAM 1.6).

    ``intersection`` and ``union`` are after the suite's conventions (ignore pixels,
    polygon overlap); ``iou`` is the per-sample value that enters gIoU (after the
    empty-union rule) and is ``None`` when the sample is dropped from gIoU. ``counted_in_ciou``
    is False when the failure policy keeps the sample out of cIoU's sums.

    ``no_target`` is the dataset's flag (gRefCOCO ``ann_id [-1]``), not the ground truth's
    area: it decides N-acc / T-acc, the targeted Prec@X set and which empty-union rule
    applied. ``None`` in logs written before the flag was recorded; metrics then fall back
    to ``gt_empty``, as they did when those logs were scored. ``not_drawn``: the protocol left
    the sample out (``PredictionStatus.NOT_DRAWN``); it enters no metric, ``n`` or ``n_failed``.
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
    no_target: bool | None = None
    not_drawn: bool = False
    bad_box: bool = False  # the stated box broke the box rule (harness.score.scoring.bad_box): box IoU 0, mask scored
    instances: InstanceMatch | None = None  # only where the suite scores instances (conventions scoring: instances)

    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in SCORE_ROW_FIELDS}
        if self.instances is not None:  # absent, not null, elsewhere: a mask suite's lines are as they always were
            out["instances"] = self.instances.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SampleScore:
        found = data.get("instances")
        if found is None:
            return cls(**data)
        return cls(**{**data, "instances": InstanceMatch.from_json(found)})


# Field names once, not dataclasses.fields() on every record written (issue 14: engine overhead).
_PREDICTION_FIELDS = tuple(f.name for f in fields(Prediction))
# The score's scalar fields, in declaration order: a score index row, and the columns metrics reduce over.
# The instance match (a small record of its own) travels beside them, never in a row.
SCORE_ROW_FIELDS = tuple(f.name for f in fields(SampleScore) if f.name != "instances")


def validate_instances(instances: Sequence[Instance], height: int, width: int, where: str) -> tuple[Instance, ...]:
    """Each instance's mask checked against the image's size (``masks.validate``) and its score a finite number;
    raises ``masks.MaskError`` naming ``where`` and the instance."""
    from harness import masks

    out = []
    for k, inst in enumerate(instances):
        if isinstance(inst.score, bool) or not isinstance(inst.score, (int, float)) or not math.isfinite(inst.score):
            raise masks.MaskError(f"{where}: instance {k}: score must be a finite number, got {inst.score!r}")
        out.append(Instance(mask=masks.validate(inst.mask, height, width, f"{where}: instance {k}"), score=float(inst.score),
                            box=inst.box))
    return tuple(out)
