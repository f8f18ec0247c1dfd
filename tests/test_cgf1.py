"""SA-Co's cgF1, pmF1, IL_MCC: the per-pair matching (harness/score/instances.py), the reduction
(harness/score/cgf1.py), a hand-worked example, and a replay run on generated SA-Co data whose results.json
equals facebookresearch/sam3's own ``CGF1Evaluator`` on the same predictions (the checkout named by
$HARNESS_SAM3_REPO; skipped without it, failed instead under HARNESS_REQUIRE_UPSTREAM=1, as CI runs)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_saco import coco_results, predictions, write_saco

from harness import masks
from harness.score import cgf1
from harness.score.instances import local_f1, match, true_positives
from harness.types import IOU_THRESHOLDS, InstanceMatch

H = W = 10


def rect(r0: int, r1: int, c0: int, c1: int) -> masks.RLE:
    a = np.zeros((H, W), dtype=np.uint8)
    a[r0:r1, c0:c1] = 1
    return masks.encode(a)


A, B = rect(0, 5, 0, 5), rect(5, 10, 5, 10)  # 25 pixels each
A_NARROW = rect(0, 5, 0, 4)  # inside A: IoU 20/25 = 0.8
C, D = rect(0, 2, 6, 9), rect(8, 10, 0, 2)


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r + 1e-4)


def test_matching_counts_true_positives_per_threshold() -> None:
    assert true_positives([A, B], [B, A]) == (2,) * 10  # one to one, whatever the order
    assert true_positives([A_NARROW], [A]) == (1,) * 7 + (0,) * 3  # IoU 0.8: at 0.50 ... 0.80, not at 0.85 ... 0.95
    assert true_positives([A, A], [A]) == (1,) * 10  # a duplicate is matched once
    assert true_positives([C], [A, B]) == (0,) * 10
    assert true_positives([], [A]) == true_positives([A], []) == (0,) * 10
    assert IOU_THRESHOLDS[0] == 0.5 and IOU_THRESHOLDS[5] == 0.75 and len(IOU_THRESHOLDS) == 10


def test_the_oracle_keeps_the_most_favourable_annotator() -> None:
    # a: two instances, b: the one found, c: none. b's mean F1 is the largest.
    assert match([A], [[A, B], [A], []]) == InstanceMatch(n_dt=1, n_gt=1, annotator=1, tp=(1,) * 10)
    # nothing found: an annotator who saw nothing is the perfect answer (a "true negative" has no F1)
    assert match([], [[A], [A, B], []]) == InstanceMatch(n_dt=0, n_gt=0, annotator=2, tp=(0,) * 10)
    # equal scores keep the earlier annotator (a later one must be strictly better)
    assert match([A, B], [[A, B], [B, A], [A]]).annotator == 0
    # every annotator saw nothing: the last of them, as upstream's loop leaves it
    assert match([], [[], [], []]).annotator == 2


def test_a_hand_worked_split() -> None:
    """Five pairs against one annotator, each metric worked out by hand:

    P1 finds both instances exactly (TP 2); P2 misses its one instance (image-level FN); P3 finds C where
    there is nothing (image-level FP); P4 is an empty pair (image-level TN); P5 finds its instance at IoU
    0.8 (a TP at the seven thresholds 0.50 ... 0.80) and one spurious instance (FP 1, then 2)."""
    pairs = [match([A, B], [[A, B]]), match([], [[A]]), match([C], [[]]), match([], [[]]), match([A_NARROW, D], [[A]])]
    got = cgf1.summarize([p.to_json() for p in pairs], rounds=0)

    mcc = (2 * 1 - 1 * 1) / (np.sqrt(3 * 3 * 2 * 2) + 1e-6)  # IL: TP 2 (P1, P5), TN 1, FP 1, FN 1
    # per threshold, pairs that are not image-level true negatives: k < 7: TP 3, FP 2, FN 1; k >= 7: TP 2, FP 3, FN 2;
    # false positives of image-level true positives only (P1, P5): k < 7: 1; k >= 7: 2
    low, high = dict(tp=3, fp=2, fn=1, pm_fp=1), dict(tp=2, fp=3, fn=2, pm_fp=2)
    per_k = [low] * 7 + [high] * 3
    pm = [f1(c["tp"] / (c["tp"] + c["pm_fp"] + 1e-4), c["tp"] / (c["tp"] + c["fn"] + 1e-4)) for c in per_k]
    micro = [f1(c["tp"] / (c["tp"] + c["fp"] + 1e-4), c["tp"] / (c["tp"] + c["fn"] + 1e-4)) for c in per_k]
    p1 = f1(2 / 2.0001, 2 / 2.0001)
    p5 = [f1(1 / 2.0001, 1 / 1.0001)] * 7 + [0.0] * 3
    macro = [(p1 + x) / 2 for x in p5]

    assert got["n_cgf1"] == 5
    assert got["il_mcc"] == pytest.approx(mcc, abs=1e-12)
    assert got["pmf1"] == pytest.approx(100 * np.mean(pm), abs=1e-10)
    assert got["cgf1"] == pytest.approx(100 * np.mean(pm) * mcc, abs=1e-10)
    assert got["cgf1@0.5"] == pytest.approx(100 * pm[0] * mcc, abs=1e-10)
    assert got["cgf1@0.75"] == pytest.approx(100 * pm[5] * mcc, abs=1e-10)
    assert got["f1"] == pytest.approx(100 * np.mean(micro), abs=1e-10)
    assert got["positive_macro_f1"] == pytest.approx(100 * np.mean(macro), abs=1e-10)
    assert got["il_precision"] == pytest.approx(100 * 2 / (3 + 1e-6)) and got["il_recall"] == pytest.approx(100 * 2 / (3 + 1e-6))
    assert got["il_fpr"] == pytest.approx(100 * 1 / (2 + 1e-6))
    # roughly: cgF1 = 100 x (7 x 0.75 + 3 x 0.5) / 10 / 6
    assert got["cgf1"] == pytest.approx(11.25, abs=0.01)
    assert local_f1((2,) * 10, 2, 2).tolist() == [p1] * 10


def test_edge_cases_of_the_reduction() -> None:
    assert cgf1.summarize([], rounds=100) == {"n_cgf1": 0}
    negatives = [InstanceMatch(0, 0, 0, (0,) * 10).to_json()] * 3 + [InstanceMatch(2, 0, 0, (0,) * 10).to_json()]
    got = cgf1.summarize(negatives, rounds=0)
    assert "positive_macro_f1" not in got  # no image-level true positive: upstream prints -1
    assert got["il_mcc"] == 0.0 and got["cgf1"] == 0.0 and got["il_fpr"] == pytest.approx(25.0, abs=1e-4)


def test_intervals_are_seeded_resamples_of_pairs_and_average_over_splits() -> None:
    rng = np.random.default_rng(3)
    pairs = []
    for _ in range(60):
        n_gt, n_dt = int(rng.integers(0, 4)), int(rng.integers(0, 4))
        top = int(rng.integers(0, min(n_gt, n_dt) + 1))
        tp = tuple(sorted(rng.integers(0, top + 1, size=10).tolist(), reverse=True))
        pairs.append(InstanceMatch(n_dt, n_gt, 0, tp).to_json())
    draws: dict[str, Any] = {}
    one = cgf1.summarize(pairs, rounds=200, draws=draws)
    assert one == cgf1.summarize(pairs, rounds=200)  # the same seed, the same intervals
    for name in cgf1.WITH_INTERVALS:
        lo, hi = one[f"{name}_ci95"]
        assert lo <= one[name] <= hi and lo < hi and draws[name].shape == (200,)
    other_draws: dict[str, Any] = {}
    other = cgf1.summarize(pairs[:30], rounds=200, draws=other_draws)
    avg = cgf1.average([one, other], [draws, other_draws])
    assert avg["cgf1"] == pytest.approx((one["cgf1"] + other["cgf1"]) / 2) and avg["n_cgf1"] == 90 and avg["n_splits"] == 2
    lo, hi = avg["cgf1_ci95"]
    assert lo == pytest.approx(np.percentile((draws["cgf1"] + other_draws["cgf1"]) / 2, 2.5))
    assert "cgf1_ci95" not in cgf1.average([one, other])  # without the resamples, no interval


# ----------------------------------------------------------------------------- against upstream


def _upstream_evaluator() -> Any:
    """``sam3/eval/cgf1_eval.py`` of the checkout ($HARNESS_SAM3_REPO), loaded on its own (it needs only
    pycocotools, numpy, scipy and tqdm)."""
    from harness.modelkit.testing import checkout_or_skip, load_upstream_file
    from harness.modelkit.upstream import Upstream

    sam3 = Upstream(name="SAM 3", repository="facebookresearch/sam3", env="HARNESS_SAM3_REPO", revision="99d02f2",
                    marker="sam3/eval/cgf1_eval.py", top_level=(), isolation="")
    return load_upstream_file(checkout_or_skip(sam3), "sam3/eval/cgf1_eval.py", "_sam3_cgf1_eval")


def _ours(name: str) -> tuple[str, float]:
    """Upstream's output key -> (our results.json key, our scale)."""
    base, _, at = name.removeprefix("cgF1_eval_segm_").partition("@")
    key = {"positive_micro_F1": "pmf1"}.get(base, base.lower()) + (f"@{at}" if at else "")
    return key, 1.0 if base == "IL_MCC" else 100.0


@pytest.mark.slow
def test_a_replay_run_equals_upstreams_cgf1_evaluator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = _upstream_evaluator()
    from harness.records.reader import StoredRun
    from harness.run.config import build_config
    from harness.run.runner import run

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    data = write_saco(tmp_path / "data")
    lines = predictions(data)
    replay = tmp_path / "sam3-like.jsonl"
    replay.write_text("".join(json.dumps({"id": k, **v}) + "\n" for k, v in lines.items()))
    out = run(build_config(models=f"replay:{replay}", suite=str(data.suite), data_root=data.root, out=tmp_path / "run"),
              render=False).run_dir
    doc = StoredRun(out).results(intervals=True)  # verified: every number re-derived from the logs
    ours = doc["results"]["replay-sam3-like"]
    means: dict[str, list[float]] = {}
    for split in data.truth:
        pred_file = tmp_path / f"{split}.json"
        pred_file.write_text(json.dumps(coco_results(lines, split)))
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = upstream.CGF1Evaluator(gt_path=[str(p) for p in data.annotation_files(split)], iou_type="segm")
            theirs = evaluator.evaluate(str(pred_file))
        assert ours[split]["n_cgf1"] == len(evaluator.eval_img_ids) < data.counts[split]  # a pair is not exhaustive
        assert len(theirs) == 26
        for name, value in theirs.items():
            key, scale = _ours(name)
            if value == -1:  # upstream's "not defined"; ours is absent
                assert key not in ours[split]
                continue
            assert abs(ours[split][key] / scale - value) <= 1e-9, (split, name, ours[split][key], value)
            means.setdefault(key, []).append(ours[split][key])
        assert 0 < ours[split]["cgf1"] and 0 < ours[split]["cgf1@0.75"] < ours[split]["cgf1@0.5"]
    average = doc["average"]["results"]["replay-sam3-like"]
    for key, values in means.items():
        assert average[key] == pytest.approx(float(np.mean(values)), abs=1e-12)
