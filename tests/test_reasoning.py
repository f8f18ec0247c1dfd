"""What the reasoning is worth: tight boxes, stated box vs mask, format share, accuracy split by agreement."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_runs import index_records

from harness import masks
from harness.data.conventions import Conventions
from harness.publish.report import reasoning as report_reasoning
from harness.publish.report import render_report
from harness.records.invariants import UntrustedRunError
from harness.records.store import read_records
from harness.run.config import build_config
from harness.run.finish import report_run
from harness.run.rescore import rescore_run
from harness.run.runner import run
from harness.score.reasoning import (
    AGREE_AT,
    KEEP_DISAGREEMENTS,
    Facts,
    ReasoningError,
    box_mask_iou,
    facts_of,
    summarize_reasoning,
    tight_box,
    tokens_per_sample,
)
from harness.types import GroundTruth, Sample, SampleScore

H, W = 10, 12


def _mask(*pixels: tuple[int, int]) -> masks.RLE:
    """A mask of the given (row, col) pixels."""
    m = np.zeros((H, W), dtype=bool)
    for r, c in pixels:
        m[r, c] = True
    return masks.encode(m)


def _block(r0: int, r1: int, c0: int, c1: int) -> masks.RLE:
    """Rows r0..r1 and columns c0..c1, both inclusive."""
    m = np.zeros((H, W), dtype=bool)
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return masks.encode(m)


# --- the tight box and its IoU with the stated box, by hand ---------------------------------


def test_tight_box_is_pixel_edges_xyxy() -> None:
    # rows 3..6, columns 2..4 inclusive: toBbox says x=2, y=3, w=3, h=4, so x2 = 5 and y2 = 7
    assert tight_box(_block(3, 6, 2, 4)) == (2.0, 3.0, 5.0, 7.0)
    assert tight_box(_mask((0, 0))) == (0.0, 0.0, 1.0, 1.0)  # one pixel is a 1 x 1 box, not 0 x 0
    assert tight_box(_mask((H - 1, W - 1))) == (W - 1.0, H - 1.0, float(W), float(H))
    assert tight_box(_mask((1, 1), (1, 2), (5, 7))) == (1.0, 1.0, 8.0, 6.0)  # an L: the box of its extremes
    assert tight_box(masks.empty(H, W)) is None
    # the same convention as box_mask: the tight box's pixel-centre mask covers the mask again
    m = _mask((1, 1), (1, 2), (5, 7))
    box = tight_box(m)
    assert box is not None
    again = masks.decode(masks.box_mask(box, H, W))
    assert again[masks.decode(m)].all() and int(again.sum()) == 5 * 7


def test_box_mask_iou_by_hand() -> None:
    m = _block(3, 6, 2, 4)  # tight box (2, 3, 5, 7), area 12
    assert box_mask_iou((2, 3, 5, 7), m) == 1.0
    assert box_mask_iou((2, 3, 8, 7), m) == pytest.approx(12 / 24)  # twice as wide: exactly the bar
    assert box_mask_iou((3, 4, 6, 8), m) == pytest.approx(6 / 18)  # shifted by one pixel both ways
    assert box_mask_iou((5, 3, 8, 7), m) == 0.0  # touching edges only
    assert box_mask_iou((2, 3, 7, 7), m) == pytest.approx(12 / 20)  # two pixels wider
    assert box_mask_iou((2, 3, 3, 4), m) == pytest.approx(1 / 12)  # toBbox's (x, y, w, h) misread as xyxy
    assert box_mask_iou((2, 3, 5, 7), masks.empty(H, W)) == 0.0  # a box promised, nothing segmented
    assert box_mask_iou(None, m) is None and box_mask_iou((2, 3, 5, 7), None) is None


def test_facts_of_records_and_bad_records() -> None:
    rec = {"id": "a", "prediction": {"mask": _block(3, 6, 2, 4), "box": [2, 3, 8, 7], "text": "<think>two words</think>x",
                                     "reasoning": " two   words\nthree ", "answer": "x", "parse_status": "ok"}}
    f = facts_of(rec, "log.jsonl")
    assert f == Facts(has_text=True, parse_ok=True, words=3, box_mask_iou=pytest.approx(0.5))
    assert facts_of({"id": "b", "prediction": {"mask": _block(0, 0, 0, 0), "text": "  ", "reasoning": ""}}, "x") == Facts(
        False, False, None, None)
    failed = facts_of({"id": "c", "prediction": {"mask": None, "box": [1, 2, 3, 4], "text": "t", "parse_status": "ok"}}, "x")
    assert failed.has_text and failed.box_mask_iou is None  # a box but no mask: not compared (the no_box group)
    with pytest.raises(ReasoningError, match=r"log\.jsonl: sample 'a': prediction\.box must be four numbers"):
        facts_of({"id": "a", "prediction": {"mask": None, "box": [1, 2, 3]}}, "log.jsonl")
    # a bad box (the box rule: non-finite, stored as null; negative; inverted) is stated and points nowhere: IoU 0
    for bad in ([1, 2, 3, None], [1, 2, 3, float("nan")], [-1, 3, 8, 7], [8, 3, 2, 7]):
        assert facts_of({"id": "a", "prediction": {"mask": _block(3, 6, 2, 4), "box": bad}}, "log.jsonl").box_mask_iou == 0.0
    with pytest.raises(ReasoningError, match=r"log\.jsonl: sample 'a': prediction\.mask is not a COCO RLE"):
        facts_of({"id": "a", "prediction": {"mask": {"size": [H], "counts": "zz"}, "box": None}}, "log.jsonl")


# --- the per model x split entry -------------------------------------------------------------


def _sample(i: int) -> Sample:
    return Sample(id=f"s{i}", image="x.png", expression="e", gt=GroundTruth(mask=masks.empty(H, W)), dataset="d", split="val")


def _score(inter: int, union: int) -> SampleScore:
    return SampleScore(inter, union, union, inter, inter / (union + 1e-5) if union else 1.0, union == 0, inter == 0, False, False)


def test_format_share_length_agreement_and_split_accuracy() -> None:
    samples = [_sample(i) for i in range(6)]
    facts = {
        "s0": Facts(True, True, 10, 1.0),  # agree
        "s1": Facts(True, True, 20, 0.5),  # agree: the bar is >=
        "s2": Facts(True, True, 30, 0.2),  # disagree
        "s3": Facts(True, False, None, None),  # did not parse: no box stated
        "s4": Facts(False, False, None, None),  # no text at all: outside every count
        "s5": Facts(True, True, 5, 0.0),  # empty mask under a stated box: disagree
    }
    scores = {"s0": _score(8, 10), "s1": _score(2, 10), "s2": _score(0, 10), "s3": _score(3, 4), "s4": _score(9, 9),
              "s5": _score(1, 30)}
    res = summarize_reasoning(facts, scores, samples, Conventions(), bootstrap_rounds=0, tokens_per_sample=12.5)
    assert res is not None
    assert res["n_text"] == 5 and res["n_format_ok"] == 4 and res["format_ok"] == pytest.approx(80.0)
    assert res["n_reasoning"] == 4 and res["reasoning_words"] == {"mean": 16.25, "median": 15.0, "max": 30}
    assert res["generated_tokens_per_sample"] == 12.5
    assert res["n_box"] == 4 and res["n_agree"] == 2 and res["agree"] == pytest.approx(50.0)
    assert res["box_mask_iou"] == pytest.approx(100 * (1.0 + 0.5 + 0.2 + 0.0) / 4)
    # only the samples that disagree (s1 at exactly 0.5 agrees)
    assert [(d["id"], d["box_mask_iou"]) for d in res["largest_disagreements"]] == [("s5", 0.0), ("s2", 20.0)]
    g = res["by_agreement"]
    assert set(g) == {"agree", "disagree", "no_box"} and AGREE_AT == 0.5
    assert g["agree"]["n"] == 2 and g["agree"]["ciou"] == pytest.approx(100 * 10 / 20, abs=1e-4)
    assert g["agree"]["giou"] == pytest.approx(100 * (0.8 + 0.2) / 2, abs=1e-4) and g["agree"]["prec@0.5"] == 50.0
    assert g["disagree"]["n"] == 2 and g["disagree"]["ciou"] == pytest.approx(100 * 1 / 40, abs=1e-4)
    assert g["disagree"]["giou"] == pytest.approx(100 * (0 + 1 / 30) / 2, abs=1e-4)
    assert g["no_box"]["n"] == 1 and g["no_box"]["ciou"] == pytest.approx(75.0, abs=1e-4)
    assert "ciou_ci95" not in g["agree"]  # no bootstrap asked for


def test_no_text_is_no_entry_and_intervals_come_with_rounds() -> None:
    samples = [_sample(i) for i in range(3)]
    mute = {s.id: Facts(False, False, None, None) for s in samples}
    scores = {s.id: _score(1, 2) for s in samples}
    assert summarize_reasoning(mute, scores, samples, Conventions(), 100) is None
    talk = {s.id: Facts(True, True, 3, 0.9) for s in samples}
    res = summarize_reasoning(talk, scores, samples, Conventions(), 100)
    assert res is not None and "ciou_ci95" in res["by_agreement"]["agree"] and "generated_tokens_per_sample" not in res
    assert set(res["by_agreement"]) == {"agree"}  # empty groups are absent, not zeros


def test_tokens_per_sample_from_manifest_counters() -> None:
    entry: dict[str, Any] = {"efficiency": {"val": {"0/2": {"samples": 4, "generated_tokens": 100},
                                                    "1/2": {"samples": 6, "generated_tokens": 50}},
                                            "test": {"all": {"samples": 5, "predict_seconds": 1.0}}}}
    assert tokens_per_sample(entry, "val") == pytest.approx(15.0)
    assert tokens_per_sample(entry, "test") is None  # the adapter does not count tokens
    assert tokens_per_sample({}, "val") is None


# --- end to end on the shapes suite ----------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reasoning")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        return run(build_config(models="shapes-reasoner,oracle-box", suite="shapes", limit=16, out=root / "run")).run_dir


def test_shapes_run_has_reasoning_for_the_text_model_only(shapes_run: Path) -> None:
    doc = json.loads((shapes_run / "results.json").read_text())
    block = doc["reasoning"]
    assert block["version"] == 1 and block["agree_at"] == AGREE_AT
    assert set(block["results"]) == {"shapes-reasoner"}  # oracle-box states a box but writes no text
    for split, res in block["results"]["shapes-reasoner"].items():
        assert res["n_text"] == doc["results"]["shapes-reasoner"][split]["n_records"] == 16
        assert res["format_ok"] == 100.0 and res["reasoning_words"]["mean"] > 10
        # its mask is the component its box points at: they agree, up to the norm1000 rounding
        assert res["n_box"] >= 1 and res["box_mask_iou"] > 90.0
        assert sum(g["n"] for g in res["by_agreement"].values()) == res["n_text"]


def test_report_renders_the_reasoning_section(shapes_run: Path) -> None:
    html = render_report(shapes_run).read_text()
    assert '<section id="reasoning">' in html and 'href="#reasoning"' in html
    section = html.split('<section id="reasoning">')[1].split("</section>")[0]
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>', section)
    assert rows and set(rows) == {"shapes-reasoner"}  # one row per split, none for the mask-only model
    doc = json.loads((shapes_run / "results.json").read_text())
    val = doc["reasoning"]["results"]["shapes-reasoner"]["val"]
    assert f'<td class="num">{val["format_ok"]:.1f}</td>' in section
    assert f'<td class="num">{val["box_mask_iou"]:.1f}</td>' in section
    # the gallery: the lowest box-mask IoUs of the model, each with both boxes, in increasing order
    # the gallery lists only samples whose box and mask disagree: the shapes reasoner's all agree
    shown = [float(v) for v in re.findall(r"box–mask IoU <strong>([0-9.]+)%</strong>", section)]
    records = {"shapes-reasoner": {s: read_records(shapes_run / "shapes-reasoner" / f"{s}.jsonl") for s in ("val", "test")}}
    ious = sorted(100 * v for rec in [r for recs in records["shapes-reasoner"].values() for r in recs]
                  if (v := facts_of(rec, "x").box_mask_iou) is not None)
    assert ious and min(ious) >= 100 * AGREE_AT and shown == []
    assert "None: every box this model stated agrees with its mask." in section
    gal = report_reasoning.disagreements(doc["reasoning"], index_records(records), ["shapes-reasoner"], None, 2)
    assert gal == [{"model": "shapes-reasoner", "entries": []}]
    assert all(res["largest_disagreements"] == [] for res in doc["reasoning"]["results"]["shapes-reasoner"].values())
    assert KEEP_DISAGREEMENTS >= 6


def test_mask_only_run_has_no_reasoning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    out = run(build_config(models="oracle-box,empty", suite="shapes", limit=3, out=tmp_path / "run")).run_dir
    assert "reasoning" not in json.loads((out / "results.json").read_text())
    html = (out / "report" / "index.html").read_text()
    assert 'id="reasoning"' not in html and "#reasoning" not in html


def test_disagreement_gallery_escapes_model_text(shapes_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "run"
    shutil.copytree(shapes_run, copy)
    log = copy / "shapes-reasoner" / "val.jsonl"
    recs = read_records(log)
    # a model that states a box far from its mask, and writes markup into its reasoning
    victim = next(r for r in recs if r["prediction"]["box"] is not None)
    victim["prediction"]["box"] = [0.0, 0.0, 1.0, 1.0]
    victim["prediction"]["reasoning"] = "<script>alert(1)</script>"
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    monkeypatch.setenv("HARNESS_CACHE", str(shapes_run.parent / "cache"))
    # The edited box no longer gives the stored box IoU: the report refuses it until the scores are derived again.
    with pytest.raises(UntrustedRunError, match="box_iou"):
        report_run(copy)
    rescore_run(copy)
    html = report_run(copy)[0].read_text()  # results.json again from the logs, then the report
    res = json.loads((copy / "results.json").read_text())["reasoning"]["results"]["shapes-reasoner"]["val"]
    assert res["by_agreement"]["disagree"]["n"] >= 1 and res["largest_disagreements"][0] == {"id": victim["id"], "box_mask_iou": 0.0}
    section = html.split('<section id="reasoning">')[1].split("</section>")[0]
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    first = section.split('<p class="box-mask">')[1]
    assert first.startswith("box–mask IoU <strong>0.0%</strong>") and "disagree" in first and victim["id"] in first
