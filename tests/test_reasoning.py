"""What the reasoning is worth: answer format, reasoning length, stated box vs mask, on hand-computed boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness import masks
from harness.data.conventions import Conventions
from harness.score.reasoning import Tally, box_mask_iou
from harness.types import GroundTruth, Sample, SampleScore

H, W = 10, 12


def rect(x1: int, y1: int, x2: int, y2: int) -> masks.RLE:
    """Pixels x1..x2-1, y1..y2-1: tight box (x1, y1, x2, y2)."""
    m = np.zeros((H, W), dtype=np.uint8)
    m[y1:y2, x1:x2] = 1
    return masks.encode(m)


MASK = rect(3, 2, 9, 6)  # 6 x 4 pixels, tight box (3, 2, 9, 6), area 24


def test_box_mask_iou_on_hand_computed_boxes() -> None:
    assert masks.mask_box(MASK) == (3.0, 2.0, 9.0, 6.0)
    assert box_mask_iou([3, 2, 9, 6], MASK) == pytest.approx(1.0)
    # (6, 2, 12, 6): 6 x 4 = 24; overlap x 6..9, y 2..6 = 3 x 4 = 12; IoU 12 / (24 + 24 - 12) = 1/3
    assert box_mask_iou([6, 2, 12, 6], MASK) == pytest.approx(1 / 3)
    # (3, 4, 9, 10): overlap y 4..6 = 6 x 2 = 12 of 24 + 36 - 12 = 48: 1/4
    assert box_mask_iou([3, 4, 9, 10], MASK) == pytest.approx(0.25)
    assert box_mask_iou([0, 0, 1, 1], MASK) == 0.0
    assert box_mask_iou([3, 2, 9, 6], masks.empty(H, W)) == 0.0  # says a box, segments nothing
    assert box_mask_iou(None, MASK) is None and box_mask_iou([1, 1, 2, 2], None) is None


def record(i: int, status: str, reasoning: str | None, box: list[float] | None, mask: masks.RLE | None) -> dict:
    return {"id": f"s{i}", "prediction": {"mask": mask, "box": box, "reasoning": reasoning, "parse_status": status}}


def score(iou: float) -> SampleScore:
    return SampleScore(intersection=int(100 * iou), union=100, gt_area=100, pred_area=100, iou=iou, gt_empty=False, pred_empty=False,
                       failed=False, parse_failed=False)


def test_tally_of_a_split() -> None:
    samples = [Sample(id=f"s{i}", image="x", expression="e", gt=GroundTruth(mask=MASK), dataset="t", split="val") for i in range(5)]
    records = [
        record(0, "ok", "one two three", [3, 2, 9, 6], MASK),       # agree (1.0)
        record(1, "ok", "", [6, 2, 12, 6], MASK),                    # disagree (1/3); empty reasoning not counted
        record(2, "failed", None, None, MASK),                       # unparsable: no box stated
        record(3, "ok", "a b", [3, 4, 9, 10], MASK),                 # disagree (1/4)
        record(4, "ok", "x y z w", [3, 2, 9, 6], MASK),              # agree
        record(9, "ok", "not in the split", [0, 0, 1, 1], MASK),
    ]
    tally = Tally(s.id for s in samples)
    assert len(list(tally.tap(records))) == 6  # passes every record on
    scores = {"s0": score(0.9), "s1": score(0.2), "s2": score(0.0), "s3": score(0.4), "s4": score(0.7)}
    out = tally.result(scores, samples, Conventions(), bootstrap_rounds=0, min_n=10)
    assert out is not None
    assert out["n_text"] == 5 and out["format_ok"] == pytest.approx(80.0)
    assert out["n_reasoning"] == 3 and out["reasoning_words_mean"] == pytest.approx(3.0) and out["reasoning_words_median"] == 3.0
    assert out["n_box_stated"] == 4
    assert out["box_mask_iou"] == pytest.approx(100 * (1 + 1 / 3 + 1 / 4 + 1) / 4)
    assert out["box_mask_agree"] == pytest.approx(50.0)
    agree, disagree = out["by_agreement"]["agree"], out["by_agreement"]["disagree"]
    assert agree["n"] == 2 and agree["ciou"] == pytest.approx(100 * 160 / 200) and "ciou_ci95" not in agree
    assert disagree["n"] == 2 and disagree["giou"] == pytest.approx(30.0)


def test_a_model_without_text_has_no_section() -> None:
    samples = [Sample(id="s0", image="x", expression="e", gt=GroundTruth(mask=MASK), dataset="t", split="val")]
    tally = Tally(["s0"])
    list(tally.tap([record(0, "none", None, None, MASK)]))
    assert tally.result({"s0": score(1.0)}, samples, Conventions(), 0, 10) is None


def test_results_json_has_reasoning_for_text_models_only(isolated: Path) -> None:
    from conftest import write_suite

    from harness.cli import main

    suite = write_suite(isolated, val=5, test=1)
    assert main(["run", "--models", "shapes-reasoner,empty", "--suite", str(suite), "--out", "r", "--no-report"]) == 0
    doc = json.loads((isolated / "r" / "results.json").read_text())
    section = doc["reasoning"]
    assert section["version"] == 1 and set(section["results"]) == {"shapes-reasoner"}
    val = section["results"]["shapes-reasoner"]["val"]
    assert val["n_text"] == doc["results"]["shapes-reasoner"]["val"]["n_records"]
    assert val["format_ok"] == pytest.approx(100.0 - doc["results"]["shapes-reasoner"]["val"]["parse_failure_rate"])
    assert val["n_box_stated"] > 0 and 0 <= val["box_mask_agree"] <= 100
    assert sum(g["n"] for g in val["by_agreement"].values()) == val["n_box_stated"]
