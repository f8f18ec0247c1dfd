"""Scoring conventions as named data (UPSTREAM 1.3). The defaults are LISA's reference behaviour.

Every knob the field disagrees on is a field here, is set by the suite spec (or a run
config), and is written into results.json beside the numbers it produced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from harness.errors import HarnessError

SampleUnit = Literal["sentence", "first_text", "object", "object_merged"]
EmptyUnion = Literal["one", "zero", "drop"]
TargetedEmptyUnion = Literal["same", "one", "zero", "drop"]
FailurePolicy = Literal["zero", "as_empty", "skip_ciou", "drop"]
IgnoreHandling = Literal["exclude", "background", "foreground", "true_positive"]
GtOverlap = Literal["lisa_sum", "binarise"]
PrecisionOver = Literal["all", "targeted"]
ExifHandling = Literal["apply", "ignore"]
Scoring = Literal["mask", "instances"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "sample_unit": ("sentence", "first_text", "object", "object_merged"),
    "empty_union": ("one", "zero", "drop"),
    "targeted_empty_union": ("same", "one", "zero", "drop"),
    "failure": ("zero", "as_empty", "skip_ciou", "drop"),
    "ignore": ("exclude", "background", "foreground", "true_positive"),
    "gt_overlap": ("lisa_sum", "binarise"),
    "precision_over": ("all", "targeted"),
    "exif": ("apply", "ignore"),
    "scoring": ("mask", "instances"),
}
# Conventions added after results.json version 1 was fixed, with their defaults: written (to results.json,
# the manifest, the scoring version) only where a suite sets another value, so every suite that does not
# use them keeps its conventions, fingerprints and numbers byte for byte.
_WRITTEN_WHEN_SET: dict[str, Any] = {"scoring": "mask", "instance_threshold": 0.5}


@dataclass(frozen=True)
class Conventions:
    """How a split is scored.

    - ``sample_unit``: what one sample is; read by the source that enumerates samples
      (LISA: every sentence; ReasonSeg: ``first_text``; Ricky06662 copies: ``object``;
      HiMTok's ``--text-mode all``: ``object_merged``, one sample per object whose expression is all
      its sentences in one, ``Meet all the descriptions: 1. s1. 2. s2. ``; REFER-format sources only).
    - ``empty_union``: per-sample IoU when prediction and ground truth are both empty:
      ``one`` (LISA, "no-object target"), ``zero`` (VisionReasoner, GroundingSuite), or
      ``drop`` (left out of gIoU). Such a sample adds nothing to cIoU's sums either way.
    - ``targeted_empty_union``: the same for a sample the dataset says has a target
      (``Sample.no_target`` false) whose union is nonetheless 0 (its ground truth rasterises
      to no pixel and the prediction is empty): ``same`` (LISA: any empty union follows
      ``empty_union``; LISA has no no-target flag), or ``one`` / ``zero`` / ``drop``
      (ReLA's refer_evaluation.py: ``zero``, "IoU = 0 if U == 0").
    - ``failure``: a prediction without a mask (error, crash, unparsable answer):
      ``zero`` (I=0, U=|GT|, IoU 0 even on an empty target), ``as_empty`` (scored as an
      empty mask by the normal rules), ``skip_ciou`` (Sa2VA: nothing added to cIoU, 0 in
      gIoU), ``drop`` (left out of everything; Seg-Zero's dropped SAM errors).
    - ``ignore``: pixels of the ignore region: ``exclude`` (LISA: neither target nor
      prediction), ``background``, ``foreground`` (the Ricky06662 ReasonSeg copies: target pixels
      a prediction may miss), ``true_positive`` (HiMTok's ``mask_image[gt_mask == 255] = 1``: target
      pixels the prediction is forced to cover, so each one is an intersection pixel).
    - ``gt_overlap``: pixels covered by two polygons of one target: ``lisa_sum`` (LISA sums
      the polygons, value 2 is not target: a predicted pixel there only enters the union)
      or ``binarise`` (labelled non-compatible variant).
    - ``giou_eps`` / ``ciou_eps``: LISA's I/(U+1e-5) per sample and ΣI/(ΣU+1e-10).
    - ``precision_over``: Prec@X over ``all`` scored samples or ``targeted`` only (ReLA).
    - ``box_threshold``: box IoU needed for box Acc (>=, REC convention).
    - ``exif``: image loading: ``ignore`` (pixels as stored, PIL's plain decode) or ``apply``
      (turned upright by the EXIF Orientation tag, as ``cv2.imread`` does: LISA, GLaMM and LENS
      read ReasonSeg with it). Every decode and header-only size read of a run follows it: the
      model's image, the ground truth's size where a source takes it from the image, the report.
    - ``scoring``: what a sample is scored on. ``mask`` (every referring suite): one mask per sample;
      a prediction that gives only instances (``Prediction.instances``) is scored on the union of its
      instances whose score is at least ``instance_threshold``. ``instances`` (SA-Co/Gold): besides the
      mask metrics of that union, the instances are matched one to one against each annotator's and
      scored as SA-Co's ``CGF1Evaluator`` scores them (cgF1, pmF1, IL_MCC; harness/score/instances.py).
      A model that gives one mask is then one instance of score 1 (none when its mask is empty).
    - ``instance_threshold``: the score an instance needs to count (``>=``), in the union and in the
      matching alike; 0.5, SA-Co's evaluator's threshold.
    """

    sample_unit: SampleUnit = "sentence"
    empty_union: EmptyUnion = "one"
    targeted_empty_union: TargetedEmptyUnion = "same"
    failure: FailurePolicy = "zero"
    ignore: IgnoreHandling = "exclude"
    gt_overlap: GtOverlap = "lisa_sum"
    giou_eps: float = 1e-5
    ciou_eps: float = 1e-10
    precision_over: PrecisionOver = "all"
    box_threshold: float = 0.5
    exif: ExifHandling = "ignore"
    scoring: Scoring = "mask"
    instance_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise HarnessError(f"convention {name}={value!r} is not one of {', '.join(choices)}")
        for name in ("giou_eps", "ciou_eps", "box_threshold", "instance_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise HarnessError(f"convention {name}={value!r} must be a non-negative number")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str = "conventions") -> Conventions:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HarnessError(f"{where}: unknown convention(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for key in ("giou_eps", "ciou_eps", "box_threshold", "instance_threshold"):
            if key in data and isinstance(data[key], str):  # YAML reads 1e-5 as a string
                data[key] = float(data[key])
        try:
            return cls(**data)
        except HarnessError as exc:
            raise HarnessError(f"{where}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name, default in _WRITTEN_WHEN_SET.items():
            if out[name] == default:
                del out[name]
        return out

    def empty_union_rule(self, no_target: bool) -> str:
        """The empty-union rule of a no-target (dataset flag) or a targeted sample."""
        if no_target or self.targeted_empty_union == "same":
            return self.empty_union
        return self.targeted_empty_union

    def replace(self, **changes: Any) -> Conventions:
        return Conventions.from_dict({**self.to_dict(), **changes})
