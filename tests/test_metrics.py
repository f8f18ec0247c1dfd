"""Golden tests of scoring and metrics: values worked out by hand, and LISA's reference computation.

LISA (dvlab-research/LISA utils/utils.py intersectionAndUnionGPU, train_ds.py validate) works
on a uint8 ground truth where polygons are summed (overlaps hold 2) and ignore pixels hold
255: ``output[target == 255] = 255``, 2-bin histograms over [0, 1] of the intersection,
output and target, union = area_output + area_target - area_intersection; per mask
``I/(U+1e-5)`` plus 1 where U == 0; cIoU = ΣI/(ΣU+1e-10). The reference below is written from
that description, on torch when it is installed and on numpy (same histogram semantics) always.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helper_datasets import lisa_iau
from pycocotools import mask as mask_utils

from harness import masks
from harness.data.conventions import Conventions
from harness.score.metrics import summarize
from harness.score.scoring import score_sample
from harness.types import GroundTruth, ParseStatus, Prediction

LISA = Conventions()


def m(h: int, w: int, *cells: tuple[int, int]) -> masks.RLE:
    a = np.zeros((h, w), np.uint8)
    for r, c in cells:
        a[r, c] = 1
    return masks.encode(a)


def block(h: int, w: int, r0: int, r1: int, c0: int, c1: int) -> masks.RLE:
    a = np.zeros((h, w), np.uint8)
    a[r0:r1, c0:c1] = 1
    return masks.encode(a)


# --------------------------------------------------------------------------- hand-computed


def test_golden_four_samples() -> None:
    h, w = 4, 5
    # 1: GT rows 0-1 x cols 0-1 (4 px), prediction rows 0-1 x cols 1-2 (4 px): I=2, U=6.
    gt1 = GroundTruth(mask=block(h, w, 0, 2, 0, 2))
    s1 = score_sample(Prediction(mask=block(h, w, 0, 2, 1, 3)), gt1, LISA)
    assert (s1.intersection, s1.union, s1.gt_area, s1.pred_area) == (2, 6, 4, 4)
    assert s1.iou == 2 / (6 + 1e-5)
    # 2: a no-target sample (dataset flag), empty prediction: U=0 -> IoU 1 ("no-object target"), nothing added to cIoU.
    gt_empty = GroundTruth(mask=masks.empty(h, w))
    s2 = score_sample(Prediction(mask=masks.empty(h, w)), gt_empty, LISA, no_target=True)
    assert (s2.intersection, s2.union, s2.iou) == (0, 0, 1.0)
    # 3: empty GT, 3 predicted pixels: I=0, U=3, IoU 0.
    s3 = score_sample(Prediction(mask=m(h, w, (3, 0), (3, 1), (3, 2))), gt_empty, LISA, no_target=True)
    assert (s3.intersection, s3.union, s3.iou) == (0, 3, 0.0)
    # 4: a failed prediction on a 5-pixel GT: policy "zero" -> I=0, U=5, IoU 0.
    gt4 = GroundTruth(mask=block(h, w, 3, 4, 0, 5))
    s4 = score_sample(Prediction(mask=None, error="boom", parse_status=ParseStatus.FAILED), gt4, LISA)
    assert (s4.intersection, s4.union, s4.iou, s4.failed, s4.parse_failed) == (0, 5, 0.0, True, True)

    res = summarize([s1, s2, s3, s4], LISA, bootstrap_rounds=0)
    assert res["ciou"] == pytest.approx(100 * 2 / (6 + 0 + 3 + 5 + 1e-10), abs=1e-12)
    assert res["giou"] == pytest.approx(100 * (2 / (6 + 1e-5) + 1 + 0 + 0) / 4, abs=1e-12)
    assert res["n"] == 4 and res["n_failed"] == 1
    # Prec@0.5 on plain I/U: sample 1 is 1/3, 2 is a hit (empty union), 3 and 4 miss.
    assert res["prec@0.5"] == 25.0
    # N-acc over the two no-target samples: only sample 2 predicted "nothing". T-acc: the
    # targeted samples are 1 (non-empty prediction: correct) and 4 (failed: never correct).
    assert res["n_no_target"] == 2 and res["n_acc"] == 50.0 and res["t_acc"] == 50.0
    assert res["parse_failure_rate"] == 25.0


def test_failure_policies() -> None:
    gt = GroundTruth(mask=block(4, 4, 0, 2, 0, 2))  # 4 px
    ok = score_sample(Prediction(mask=block(4, 4, 0, 2, 0, 2)), gt, LISA)  # I=U=4
    failed = Prediction(mask=None, error="x")
    results = {}
    for policy in ("zero", "as_empty", "skip_ciou", "drop"):
        conv = LISA.replace(failure=policy)
        results[policy] = summarize([ok, score_sample(failed, gt, conv)], conv, bootstrap_rounds=0)
    assert results["zero"]["ciou"] == pytest.approx(100 * 4 / 8)
    assert results["zero"]["giou"] == pytest.approx(100 * (4 / (4 + 1e-5)) / 2)
    assert results["as_empty"]["ciou"] == pytest.approx(100 * 4 / 8)
    assert results["skip_ciou"]["ciou"] == pytest.approx(100 * 4 / 4)  # Sa2VA's inflation
    assert results["skip_ciou"]["giou"] == pytest.approx(100 * (4 / (4 + 1e-5)) / 2)
    assert results["drop"]["ciou"] == pytest.approx(100 * 4 / 4)
    assert results["drop"]["giou"] == pytest.approx(100 * 4 / (4 + 1e-5))
    assert results["drop"]["n"] == 1 and results["drop"]["n_records"] == 2


def test_failure_on_empty_target_is_never_rewarded() -> None:
    gt = GroundTruth(mask=masks.empty(3, 3))
    s = score_sample(Prediction(mask=None, error="x"), gt, LISA)
    assert s.iou == 0.0 and s.union == 0
    assert summarize([s], LISA, bootstrap_rounds=0)["prec@0.5"] == 0.0
    # ...whereas "as_empty" scores it as an empty prediction, which is right on an empty target.
    conv = LISA.replace(failure="as_empty")
    assert score_sample(Prediction(mask=None, error="x"), gt, conv).iou == 1.0


def test_empty_union_rules() -> None:
    gt = GroundTruth(mask=masks.empty(2, 2))
    pred = Prediction(mask=masks.empty(2, 2))
    assert score_sample(pred, gt, LISA.replace(empty_union="one")).iou == 1.0
    assert score_sample(pred, gt, LISA.replace(empty_union="zero")).iou == 0.0
    assert score_sample(pred, gt, LISA.replace(empty_union="drop")).iou is None


def test_targeted_empty_union_rule() -> None:
    """The rule for union 0 is picked by the dataset's flag: LISA ("same") gives every empty union
    the empty_union value; ReLA ("zero") gives a targeted one IoU 0 and a no-target one 1."""
    gt = GroundTruth(mask=masks.empty(2, 2))
    pred = Prediction(mask=masks.empty(2, 2))
    assert score_sample(pred, gt, LISA).iou == 1.0
    rela = LISA.replace(targeted_empty_union="zero")
    assert score_sample(pred, gt, rela, no_target=False).iou == 0.0
    assert score_sample(pred, gt, rela, no_target=True).iou == 1.0
    assert score_sample(pred, gt, LISA.replace(targeted_empty_union="drop")).iou is None
    # Prec@X follows the per-sample rule; the targeted Prec@X set and T-acc come from the flag.
    targeted = score_sample(pred, gt, rela.replace(precision_over="targeted"))
    res = summarize([targeted], rela.replace(precision_over="targeted"), bootstrap_rounds=0)
    assert res["prec@0.5"] == 0.0 and "n_acc" not in res and res["n_targeted_empty_gt"] == 1
    assert summarize([score_sample(pred, gt, LISA)], LISA, bootstrap_rounds=0)["prec@0.5"] == 100.0


def test_ignore_handling() -> None:
    h, w = 3, 4
    # Target: row 0 (4 px). Ignore: (1,0), (1,1). Prediction: (0,0), (0,1), (1,0), (1,1), (2,3).
    gt = GroundTruth(mask=block(h, w, 0, 1, 0, 4), ignore=m(h, w, (1, 0), (1, 1)))
    pred = Prediction(mask=m(h, w, (0, 0), (0, 1), (1, 0), (1, 1), (2, 3)))
    ex = score_sample(pred, gt, LISA)
    assert (ex.intersection, ex.pred_area, ex.gt_area, ex.union) == (2, 3, 4, 5)
    bg = score_sample(pred, gt, LISA.replace(ignore="background"))
    assert (bg.intersection, bg.pred_area, bg.gt_area, bg.union) == (2, 5, 4, 7)
    fg = score_sample(pred, gt, LISA.replace(ignore="foreground"))
    assert (fg.intersection, fg.pred_area, fg.gt_area, fg.union) == (4, 5, 6, 7)


def test_overlapping_polygons_lisa_sum() -> None:
    h, w = 3, 4
    # Two polygons: cols 0-2 and cols 1-3 of row 0 -> union 4 px, overlap cols 1-2 (2 px).
    gt = GroundTruth(mask=block(h, w, 0, 1, 0, 4), overlap=block(h, w, 0, 1, 1, 3))
    pred = Prediction(mask=block(h, w, 0, 1, 0, 4))
    s = score_sample(pred, gt, LISA)
    # Value-2 pixels are not target: I = 2, target area 2, predicted area 4, U = 4.
    assert (s.intersection, s.gt_area, s.pred_area, s.union) == (2, 2, 4, 4)
    b = score_sample(pred, gt, LISA.replace(gt_overlap="binarise"))
    assert (b.intersection, b.gt_area, b.union) == (4, 4, 4)


def test_box_metrics() -> None:
    gt = GroundTruth(mask=block(10, 10, 0, 4, 0, 4), box=(0, 0, 4, 4))
    hit = score_sample(Prediction(mask=block(10, 10, 0, 4, 0, 4), box=(0, 0, 4, 3)), gt, LISA)  # IoU 12/16
    miss = score_sample(Prediction(mask=block(10, 10, 0, 4, 0, 4), box=(2, 2, 6, 6)), gt, LISA)  # 4/28
    nobox = score_sample(Prediction(mask=block(10, 10, 0, 4, 0, 4)), gt, LISA)
    assert hit.box_iou == 0.75 and miss.box_iou == pytest.approx(4 / 28) and nobox.box_iou == 0.0
    res = summarize([hit, miss, nobox], LISA, bootstrap_rounds=0)
    assert res["box_acc@0.5"] == pytest.approx(100 / 3)
    assert res["box_miou"] == pytest.approx(100 * (0.75 + 4 / 28) / 3)


def test_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    scores = []
    for _ in range(200):
        gt = GroundTruth(mask=block(8, 8, 0, 4, 0, 4))
        c = int(rng.integers(0, 5))
        scores.append(score_sample(Prediction(mask=block(8, 8, 0, 4, 0, c)), gt, LISA))
    res = summarize(scores, LISA)
    lo, hi = res["ciou_ci95"]
    assert lo < res["ciou"] < hi and hi - lo < 15
    lo, hi = res["giou_ci95"]
    assert lo < res["giou"] < hi
    assert summarize(scores, LISA) == res  # seeded: the same numbers every time


# --------------------------------------------------------------------------- LISA reference


def lisa_reference(outputs: list[np.ndarray], targets: list[np.ndarray], backend: str) -> tuple[float, float]:
    """LISA's validate() over single-mask images, written from its description (module doc)."""
    if backend == "torch":
        torch = pytest.importorskip("torch")

        def iau(output: np.ndarray, target: np.ndarray) -> tuple[float, float]:
            o = torch.from_numpy(output.astype(np.int64)).flatten()
            t = torch.from_numpy(target.astype(np.int64)).flatten()
            o[t == 255] = 255
            inter = o[o == t]
            a_i = torch.histc(inter.float(), bins=2, min=0, max=1)
            a_o = torch.histc(o.float(), bins=2, min=0, max=1)
            a_t = torch.histc(t.float(), bins=2, min=0, max=1)
            return float(a_i[1]), float((a_o + a_t - a_i)[1])
    else:
        iau = lisa_iau  # the same histogram semantics on numpy

    sum_i = sum_u = acc = 0.0
    for o, t in zip(outputs, targets):
        i, u = iau(o, t)
        sum_i += i
        sum_u += u
        acc += i / (u + 1e-5) + (1.0 if u == 0 else 0.0)
    return 100 * sum_i / (sum_u + 1e-10), 100 * acc / len(outputs)


def random_case(rng: np.random.Generator, h: int, w: int, kind: str) -> tuple[np.ndarray, GroundTruth, np.ndarray]:
    """A LISA-style uint8 target (polygon sum, 255 ignore), the same GT as RLE, and a prediction."""
    polys = []
    if kind != "empty":
        for _ in range(int(rng.integers(1, 4))):  # up to three polygons, often overlapping
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            pts = []
            for k in range(int(rng.integers(3, 7))):
                ang = 2 * math.pi * k / 6 + rng.uniform(0, 0.5)
                r = rng.uniform(3, min(h, w) / 2)
                pts += [float(np.clip(cx + r * math.cos(ang), 0, w)), float(np.clip(cy + r * math.sin(ang), 0, h))]
            polys.append(pts)
    if polys:
        rles = mask_utils.frPyObjects(polys, h, w)
        target = np.sum(mask_utils.decode(rles), axis=2).astype(np.uint8)  # LISA: summed, not binarised
    else:
        target = np.zeros((h, w), np.uint8)
    ignore = np.zeros((h, w), bool)
    if kind == "ignore":
        ignore[rng.integers(0, h) :, : rng.integers(1, w)] = True
        ignore &= target == 0
        target[ignore] = 255
    union = (target >= 1) & (target != 255)
    overlap = (target >= 2) & (target != 255)
    gt = GroundTruth(
        mask=masks.encode(union),
        overlap=masks.encode(overlap) if overlap.any() else None,
        ignore=masks.encode(ignore) if ignore.any() else None,
    )
    pred_kind = rng.integers(0, 4)
    if pred_kind == 0:
        pred = np.zeros((h, w), bool)
    elif pred_kind == 1:
        pred = union.copy()
    else:
        pred = rng.random((h, w)) < 0.3
        pred |= np.roll(union, int(rng.integers(-3, 4)), axis=1)
    return target, gt, pred


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_equals_lisa_reference(backend: str) -> None:
    rng = np.random.default_rng(7)
    targets, outputs, scores = [], [], []
    for i in range(120):
        kind = ["plain", "ignore", "empty"][i % 3]
        target, gt, pred = random_case(rng, int(rng.integers(8, 40)), int(rng.integers(8, 40)), kind)
        targets.append(target)
        outputs.append(pred.astype(np.uint8))
        scores.append(score_sample(Prediction(mask=masks.encode(pred)), gt, LISA))
    assert any(s.union == 0 for s in scores), "the cases must include an empty union"
    assert any(t.max() >= 2 and t.max() != 255 for t in targets) or any(((t >= 2) & (t != 255)).any() for t in targets)
    ref_ciou, ref_giou = lisa_reference(outputs, targets, backend)
    res = summarize(scores, LISA, bootstrap_rounds=0)
    # float64 here vs float32 histograms upstream: equal to float32 precision.
    assert res["ciou"] == pytest.approx(ref_ciou, rel=1e-6)
    assert res["giou"] == pytest.approx(ref_giou, rel=1e-6)


def test_exact_division_with_zero_eps() -> None:
    """ReLA divides I/U exactly: eps 0 must work, including on empty unions."""
    conv = LISA.replace(giou_eps=0, ciou_eps=0)
    gt = GroundTruth(mask=block(4, 4, 0, 2, 0, 2))
    exact = score_sample(Prediction(mask=block(4, 4, 0, 2, 0, 1)), gt, conv)
    assert exact.iou == 0.5
    empty = score_sample(Prediction(mask=masks.empty(4, 4)), GroundTruth(mask=masks.empty(4, 4)), conv)
    assert empty.iou == 1.0
    res = summarize([exact, empty], conv, bootstrap_rounds=50)
    assert res["ciou"] == 50.0 and res["giou"] == 75.0
    assert summarize([empty, empty], conv, bootstrap_rounds=50)["ciou"] == 0.0
