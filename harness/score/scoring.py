"""Per-sample scoring: one Prediction against one GroundTruth -> one SampleScore.

Intersection and union are computed on RLE with pycocotools (no decode). The arithmetic
reproduces LISA's ``intersectionAndUnionGPU`` (utils/utils.py) on its uint8 ground truth:

- ``output[target == 255] = 255`` then a 2-bin histogram over [0, 1]: ignore pixels drop out
  of the predicted area, the target area and the intersection (``ignore="exclude"``);
- polygons summed without binarising: pixels of value 2 are outside the histogram, so they
  are not target and never intersect, but a predicted pixel there still counts in the
  predicted area and so in the union (``gt_overlap="lisa_sum"``).

With target T = mask minus overlap, prediction P and ignore G (G disjoint from the mask,
the overlap inside it), everything follows from |P|, |P∧M|, |P∧O|, |P∧G|, |M|, |O|, |G|.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from harness import masks
from harness.data.conventions import Conventions
from harness.score.instances import detections, match, scored_mask
from harness.types import GroundTruth, InstanceMatch, Prediction, SampleScore


def bad_box(box: Sequence[float] | None) -> bool:
    """The box rule: a stated box with a non-finite or negative coordinate, or with x2 < x1 or y2 < y1,
    is a bad box. It fails the box metric (box IoU 0: a miss in box accuracy, 0 in box mIoU) and is
    counted (``bad_box``, results' ``n_bad_box``); the mask is scored as usual. No box is not a bad box."""
    if box is None:
        return False
    x1, y1, x2, y2 = (float(v) for v in box)
    return not all(math.isfinite(v) and v >= 0.0 for v in (x1, y1, x2, y2)) or x2 < x1 or y2 < y1


def intersection_union(pred: masks.RLE, gt: GroundTruth, conv: Conventions,
                       areas: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """Return (intersection, union, gt_area, pred_area) under the conventions; ``areas``: |pred| and
    |gt.mask| when already known (``score_samples`` counts a batch's in one call)."""
    p_area, gt_area = (masks.area(pred), masks.area(gt.mask)) if areas is None else areas
    inter = masks.intersection_area(pred, gt.mask) if p_area else 0
    if gt.overlap is not None and conv.gt_overlap == "lisa_sum":
        gt_area -= masks.area(gt.overlap)
        if inter:
            inter -= masks.intersection_area(pred, gt.overlap)
    if gt.ignore is not None:
        p_ign = masks.intersection_area(pred, gt.ignore) if p_area else 0
        if conv.ignore == "exclude":
            p_area -= p_ign
        elif conv.ignore == "foreground":
            inter += p_ign
            gt_area += masks.area(gt.ignore)
        elif conv.ignore == "true_positive":  # G joins the target and the prediction: P ∪ G against M ∪ G
            g_area = masks.area(gt.ignore)
            inter += g_area
            p_area += g_area - p_ign
            gt_area += g_area
    union = p_area + gt_area - inter
    return inter, union, gt_area, p_area


def score_samples(items: Sequence[tuple[Prediction, GroundTruth, bool]], conv: Conventions) -> list[SampleScore]:
    """``score_sample`` for each (prediction, ground truth, no_target) of a batch, the same scores,
    with the areas of the predicted and ground-truth masks counted in one pycocotools call each."""
    masked = [(k, pred.mask, gt.mask) for k, (pred, gt, _) in enumerate(items) if pred.mask is not None and not pred.not_drawn]
    counted = zip(masks.areas([p for _, p, _ in masked]), masks.areas([g for _, _, g in masked]))
    known = {k: both for (k, _, _), both in zip(masked, counted)}
    return [score_sample(pred, gt, conv, no_target, known.get(k)) for k, (pred, gt, no_target) in enumerate(items)]


def instance_match(pred: Prediction, gt: GroundTruth, conv: Conventions) -> InstanceMatch | None:
    """The sample's instance matching where the suite scores instances and the sample has instance ground
    truth (harness/score/instances.py); None otherwise. A failed prediction has no detection."""
    if conv.scoring != "instances" or gt.instances is None:
        return None
    return match(detections(pred, conv), gt.instances)


def score_sample(pred: Prediction, gt: GroundTruth, conv: Conventions, no_target: bool = False,
                 areas: tuple[int, int] | None = None) -> SampleScore:
    """Score one prediction. A failed prediction (no mask, no instances) follows ``conv.failure``.

    ``no_target`` is the sample's dataset flag (``Sample.no_target``): it is recorded, and it
    picks the empty-union rule (``conv.empty_union_rule``). An empty ground truth alone
    does not make a sample no-target: ReLA scores a targeted sample with union 0 as IoU 0.
    ``areas``: |pred.mask| and |gt.mask|, when the caller has counted them (``score_samples``).
    The mask scored is ``scored_mask`` (a prediction of instances only: their union at the suite's
    ``instance_threshold``); where the suite scores instances, ``instances`` holds the matching.
    """
    if pred.not_drawn:  # the protocol left it out: no metric sees it (metrics.summarize counts it apart)
        gt_area = intersection_union(masks.empty(gt.height, gt.width), gt, conv)[2]
        return SampleScore(intersection=0, union=0, gt_area=gt_area, pred_area=0, iou=None, gt_empty=gt_area == 0,
                           pred_empty=True, failed=False, parse_failed=False, counted_in_ciou=False, no_target=no_target,
                           not_drawn=True)
    parse_failed = pred.parse_status.value == "failed"
    bad = bad_box(pred.box)
    box_iou = None
    if gt.box is not None:
        box_iou = masks.box_iou(pred.box, gt.box) if pred.box is not None and not bad else 0.0

    mask = scored_mask(pred, conv, gt.height, gt.width)
    if mask is None:
        if conv.failure == "as_empty":
            empty = masks.empty(gt.height, gt.width)
            scored = score_sample(Prediction(mask=empty, box=pred.box, parse_status=pred.parse_status), gt, conv, no_target)
            return replace(scored, failed=True, pred_empty=True)
        _, union, gt_area, _ = intersection_union(masks.empty(gt.height, gt.width), gt, conv)
        return SampleScore(
            intersection=0,
            union=union,
            gt_area=gt_area,
            pred_area=0,
            iou=None if conv.failure == "drop" else 0.0,
            gt_empty=gt_area == 0,
            pred_empty=True,
            failed=True,
            parse_failed=parse_failed,
            counted_in_ciou=conv.failure == "zero",
            box_iou=box_iou,
            no_target=no_target,
            bad_box=bad,
            instances=instance_match(pred, gt, conv),
        )

    inter, union, gt_area, p_area = intersection_union(mask, gt, conv, areas if mask is pred.mask else None)
    # The empty-union rule first, so that giou_eps may be 0 (ReLA divides exactly).
    rule = conv.empty_union_rule(no_target)
    iou = {"one": 1.0, "zero": 0.0, "drop": None}[rule] if union == 0 else inter / (union + conv.giou_eps)
    return SampleScore(
        intersection=inter,
        union=union,
        gt_area=gt_area,
        pred_area=p_area,
        iou=iou,
        gt_empty=gt_area == 0,
        pred_empty=p_area == 0,
        failed=False,
        parse_failed=parse_failed,
        counted_in_ciou=True,
        box_iou=box_iou,
        no_target=no_target,
        bad_box=bad,
        instances=instance_match(pred, gt, conv),
    )
