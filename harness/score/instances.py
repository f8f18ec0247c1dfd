"""Instance predictions per sample: the one mask a mask suite scores, and SA-Co's instance matching.

A prediction may carry instances (``Prediction.instances``: masks with scores) besides or instead of
its one mask. Two questions are answered here, once for every caller (scoring, rescore, the report):

- ``scored_mask``: the mask that mask metrics score. The prediction's own mask when it has one, else
  the union of its instances whose score is at least the suite's ``instance_threshold`` (an empty mask
  when none is), else nothing (a failed prediction).
- ``match``: the per-pair counts of SA-Co's cgF1, written from the behaviour of facebookresearch/sam3
  ``sam3/eval/cgf1_eval.py`` (``CGF1Eval.evaluateImg`` and ``CGF1Evaluator._select_best_scoring``,
  revision 99d02f2) and tested against it (tests/test_cgf1.py):

  * the detections are the instances whose score is at least the threshold, in the model's order
    (upstream drops the rest before matching); a model that gives one mask is one detection of score
    1, and none when that mask is empty (it said "no instance");
  * against one annotator: the IoU of every detection with every instance of the annotator (crowd
    segments are not instances: upstream marks them ``ignore`` and drops them before matching, so a
    detection on one is a false positive), a one-to-one assignment of largest total IoU
    (``scipy.optimize.linear_sum_assignment``, as upstream, so ties resolve the same way), and at each
    IoU threshold the number of assigned pairs at or above it: the true positives;
  * the oracle over annotators: the annotators are taken in order and the current choice is replaced
    by a later one whose mean local F1 over the thresholds is strictly larger; a pair that neither side
    fills (no detection, no instance) has no F1 and is the perfect answer, so an annotator with no
    instance replaces any choice when the model found none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from harness import masks
from harness.data.conventions import Conventions
from harness.types import IOU_THRESHOLDS, RLE, InstanceMatch, Prediction

_THRESHOLDS = np.asarray(IOU_THRESHOLDS, dtype=np.float64)
# The small constant upstream adds to every denominator of a local precision, recall and F1.
LOCAL_EPS = 1e-4


def scored_mask(pred: Prediction, conv: Conventions, height: int, width: int) -> RLE | None:
    """The one mask a prediction is scored on: its mask, else the union of its instances at or above the
    suite's ``instance_threshold``, else None (no mask and no instances: a failed prediction)."""
    if pred.mask is not None:
        return pred.mask
    if pred.instances is None:
        return None
    return masks.union([i.mask for i in pred.instances if i.score >= conv.instance_threshold], height, width)


def detections(pred: Prediction, conv: Conventions) -> list[RLE]:
    """The instances a prediction puts forward for matching (see the module docstring), in its order."""
    if pred.instances is not None:
        return [i.mask for i in pred.instances if i.score >= conv.instance_threshold]
    if pred.mask is not None and masks.area(pred.mask) > 0:
        return [pred.mask]
    return []


def true_positives(dts: Sequence[RLE], gts: Sequence[RLE]) -> tuple[int, ...]:
    """At each IoU threshold, the one-to-one matched pairs (largest total IoU) with IoU at or above it."""
    if not dts or not gts:
        return (0,) * len(IOU_THRESHOLDS)
    ious = masks.iou_matrix(list(dts), list(gts))
    rows, cols = linear_sum_assignment(-ious)
    matched = ious[rows, cols]
    return tuple(int((matched >= t).sum()) for t in _THRESHOLDS)


def local_f1(tp: Sequence[int] | np.ndarray, n_dt: int | np.ndarray, n_gt: int | np.ndarray) -> np.ndarray:
    """Per threshold, the pair's F1 as upstream computes it (each denominator plus ``LOCAL_EPS``); on arrays
    of pairs too (``tp`` (n, thresholds), ``n_dt`` and ``n_gt`` (n, 1))."""
    tps = np.asarray(tp, dtype=np.int64)
    fps, fns = n_dt - tps, n_gt - tps
    precision = tps / (tps + fps + LOCAL_EPS)
    recall = tps / (tps + fns + LOCAL_EPS)
    return np.asarray(2 * precision * recall / (precision + recall + LOCAL_EPS))


def match(dts: Sequence[RLE], annotators: Sequence[Sequence[RLE]]) -> InstanceMatch:
    """The pair's counts against the annotator the oracle chooses (see the module docstring)."""
    if not annotators:
        raise ValueError("instance matching needs at least one annotator's instances")
    best: InstanceMatch | None = None
    best_f1: float | None = None
    for k, gts in enumerate(annotators):
        tp = true_positives(dts, gts)
        candidate = InstanceMatch(n_dt=len(dts), n_gt=len(gts), annotator=k, tp=tp)
        # No detection and no instance: no local F1 (upstream's "true negative"), the perfect answer.
        f1 = None if not dts and not gts else float(local_f1(tp, len(dts), len(gts)).mean())
        if best is None or (f1 is None) or (best_f1 is not None and f1 > best_f1):
            best, best_f1 = candidate, f1
    assert best is not None
    return best
