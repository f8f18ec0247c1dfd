"""harness.load_run: DataFrames of a stored run for notebooks, imported lazily."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_suite

import harness
from harness.cli import main
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(isolated: Path) -> Path:
    suite = write_suite(isolated, val=4, test=2)
    assert main(["run", "--models", "shapes-reasoner,empty", "--suite", str(suite), "--out", "r", "--no-report"]) == 0
    return isolated / "r"


def test_import_harness_stays_light() -> None:
    code = "import sys, harness; print([m for m in ('numpy', 'pandas') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
    assert "load_run" in dir(harness)


def test_results_match_results_json(run: Path) -> None:
    r = harness.load_run(run)
    doc = json.loads((run / "results.json").read_text())
    frame = r.results()
    assert list(frame[["model", "split"]].itertuples(index=False, name=None)) == [
        ("shapes-reasoner", "val"), ("shapes-reasoner", "test"), ("empty", "val"), ("empty", "test")]
    row = frame[(frame.model == "shapes-reasoner") & (frame.split == "val")].iloc[0]
    res = doc["results"]["shapes-reasoner"]["val"]
    assert row.ciou == res["ciou"] and row.n == res["n"] and [row.ciou_lo, row.ciou_hi] == res["ciou_ci95"]


def test_samples_have_scores_outputs_and_slices(run: Path) -> None:
    r = harness.load_run(run)
    frame = r.samples()
    assert len(frame) == 2 * (16 + 8)
    assert {"model", "split", "id", "expression", "iou", "intersection", "union", "failed", "parse_status", "answer", "reasoning",
            "slice:size_coco", "slice:target", "slice:expression_kind:spatial"} <= set(frame.columns)
    assert "mask" not in frame.columns
    assert frame[frame.model == "empty"].box_mask_iou.isna().all()
    mine = frame[(frame.model == "shapes-reasoner") & (frame.split == "val")]
    assert set(mine.parse_status) == {"ok"} and mine.reasoning.str.len().min() > 0
    # the per-sample table reproduces the split's cIoU and each slice's n
    doc = json.loads((run / "results.json").read_text())
    assert 100 * mine.intersection.sum() / (mine.union.sum() + 1e-10) == pytest.approx(doc["results"]["shapes-reasoner"]["val"]["ciou"])
    sl = doc["slices"]["results"]["shapes-reasoner"]["val"]
    assert mine["slice:target"].value_counts().to_dict() == {k: v["n"] for k, v in sl["target"].items()}
    assert int(mine["slice:expression_kind:spatial"].sum()) == sl["expression_kind"]["spatial"]["n"]


def test_slices_frame(run: Path) -> None:
    frame = harness.load_run(run).slices()
    doc = json.loads((run / "results.json").read_text())
    row = frame[(frame.model == "empty") & (frame.split == "test") & (frame.family == "target") & (frame.slice == "targeted")].iloc[0]
    ref = doc["slices"]["results"]["empty"]["test"]["target"]["targeted"]
    assert row.n == ref["n"] and row.giou == ref["giou"]


def test_compare_with_another_run(run: Path) -> None:
    suite = run.parent / "mini.yaml"
    assert main(["run", "--models", "oracle-box", "--suite", str(suite), "--out", "s", "--no-report"]) == 0
    frame = harness.load_run(run).compare(run.parent / "s", models=["r:shapes-reasoner", "s:oracle-box"], with_slices=False)
    assert set(frame.a) == {"r:shapes-reasoner"} and set(frame.b) == {"s:oracle-box"}
    assert len(frame) == 2 * 2  # two splits x two metrics


def test_not_a_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"not a run directory|no results\.json"):
        harness.load_run(tmp_path)


def test_reasoning_frame(run: Path) -> None:
    r = harness.load_run(run)
    frame = r.reasoning()
    assert list(frame.model) == ["shapes-reasoner", "shapes-reasoner"]
    samples = r.samples(with_slices=False)
    mine = samples[(samples.model == "shapes-reasoner") & (samples.split == "val")]
    row = frame[frame.split == "val"].iloc[0]
    assert row.reasoning_words_mean == pytest.approx(mine.reasoning_words.mean())
    assert row.box_mask_iou == pytest.approx(100 * mine.box_mask_iou.mean())
    assert row.agree_n == (mine.box_mask_iou >= 0.5).sum()
