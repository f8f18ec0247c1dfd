"""FP-RefCOCO (SESAME): REFER refs with false-premise sentences become no-target samples; N-acc, the
false-positive rate on absent targets and SESAME's "See" accuracy, worked out by hand."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from helper_datasets import COCO_DIR, REFER_ANNS, REFER_IMAGES, REFER_REFS, coco_name, instances, jpeg, rle_of

from harness import masks
from harness.cli import main
from harness.data.suites import load_suite
from harness.score.metrics import summarize
from harness.score.scoring import score_sample
from harness.types import Prediction

SUITE = load_suite("fp-refcoco")


def write_fp_refer(root: Path) -> None:
    """fprefcoco with ref 1 (val) holding a true sentence, an ``is_false_premise`` one and an ``exist: false``
    one, and ref 2 (val) a true sentence; SESAME's split_by."""
    refs = copy.deepcopy(REFER_REFS)
    refs[0]["sentences"] = [
        {"sent_id": 11, "sent": "man on the left", "is_false_premise": False},
        {"sent_id": 13, "sent": "woman on the left", "is_false_premise": True, "gt_sent": "man on the left"},
        {"sent_id": 14, "sent": "dog on the left", "exist": False},
    ]
    d = root / "refer_seg" / "fprefcoco"
    d.mkdir(parents=True)
    (d / "refs(berkeley_exclude_unified).p").write_bytes(pickle.dumps(refs, protocol=2))
    (d / "instances.json").write_text(json.dumps(instances(REFER_IMAGES, REFER_ANNS)))
    for i, (h, w) in REFER_IMAGES.items():
        jpeg(root / COCO_DIR / coco_name(i), h, w, seed=i)


def mini_suite(tmp_path: Path) -> Path:
    raw = dict(SUITE.raw)
    raw["source"] = {**raw["source"], "splits": {"fprefcoco_val": raw["source"]["splits"]["fprefcoco_val"]}}
    raw.update(splits={"fprefcoco_val": {"counts": {"images": 1, "objects": 2, "expressions": 4}}}, default_splits=["fprefcoco_val"])
    path = tmp_path / "mini-fp.yaml"
    path.write_text(json.dumps(raw))
    return path


def test_false_premise_sentences_are_no_target_samples_with_an_empty_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    write_fp_refer(tmp_path / "data")
    from harness.data.datacheck import make_source

    src = make_source(load_suite(str(mini_suite(tmp_path))), tmp_path / "data")
    got = src.samples("fprefcoco_val")
    assert [(s.id.rsplit("/", 2)[-2:], s.no_target) for s in got] == [
        (["1", "11"], False), (["1", "13"], True), (["1", "14"], True), (["2", "21"], False)]
    true, false = got[0], got[1]
    assert masks.area(false.gt.mask) == 0 and false.gt.box is None and masks.area(true.gt.mask) > 0
    assert (false.gt.height, false.gt.width) == (true.gt.height, true.gt.width) == REFER_IMAGES[1]
    assert false.meta["premise"] == "false" and false.meta["gt_sent"] == "man on the left"
    assert "premise" not in false.query().meta and "gt_sent" not in false.query().meta  # the answer never reaches a model


def test_the_flag_off_leaves_refcoco_suites_and_their_data_digest_alone(tmp_path: Path) -> None:
    from harness.data.sources.refer import ReferSource

    refcoco = load_suite("refcoco")
    src = ReferSource(dict(refcoco.source_params), refcoco.conventions, tmp_path, tmp_path / "cache")
    assert "false_premise" not in src.spec("refcoco_val")  # so the data digests of stored runs do not move


def test_no_target_metrics_worked_out_by_hand() -> None:
    """Six samples: three targeted (answered: right mask, right mask, nothing), three absent (answered:
    nothing, a mask, a failure). N-acc 1/3, fp_rate 1/3, T-acc 2/3, See accuracy (2 + 1) / 6 = 50 %."""
    conv = SUITE.conventions
    gt_mask = np.zeros((10, 10), bool)
    gt_mask[2:6, 2:6] = True
    empty = np.zeros((10, 10), bool)
    from harness.types import GroundTruth

    target, absent = GroundTruth(mask=masks.encode(gt_mask)), GroundTruth(mask=masks.encode(empty))
    answered = [(gt_mask, target, False), (gt_mask, target, False), (empty, target, False),
                (empty, absent, True), (gt_mask, absent, True), (None, absent, True)]
    scores = [score_sample(Prediction(mask=None if p is None else masks.encode(p)), gt, conv, nt) for p, gt, nt in answered]
    out = summarize(scores, conv, bootstrap_rounds=0)
    assert out["n_no_target"] == 3
    assert out["n_acc"] == pytest.approx(100 / 3) and out["fp_rate"] == pytest.approx(100 / 3)
    assert out["t_acc"] == pytest.approx(200 / 3) and out["exist_acc"] == pytest.approx(50.0)
    # SESAME's cIoU: I 16 + 16 over U 16 + 16 + 16 (the missed target) + 16 (the mask on the absent target adds its
    # pixels to the union only); the failed absent sample adds |GT| = 0.
    assert out["ciou"] == pytest.approx(100 * (16 + 16) / (16 + 16 + 16 + 16), abs=1e-6)


def test_a_replay_run_and_data_check_on_the_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    write_fp_refer(root)
    suite = mini_suite(tmp_path)
    assert main(["data", "check", "--suite", str(suite), "--data-root", str(root)]) == 0, capsys.readouterr().out
    from harness.data.datacheck import make_source

    samples = make_source(load_suite(str(suite)), root).samples("fprefcoco_val")
    # The model answers every sentence with the true target's mask: right on 2 targeted, wrong on 2 absent.
    lines = [{"id": s.id, "mask": rle_of(masks.decode(samples[0].gt.mask) if s.meta["object"] == "1" else masks.decode(s.gt.mask))}
             for s in samples]
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "run"
    assert main(["run", "--models", f"replay:{replay}", "--suite", str(suite), "--data-root", str(root), "--out", str(out),
                 "--no-report"]) == 0
    [res] = [by["fprefcoco_val"] for by in json.loads((out / "results.json").read_text())["results"].values()]
    assert (res["n_no_target"], res["n_acc"], res["fp_rate"], res["t_acc"], res["exist_acc"]) == (2, 0.0, 100.0, 100.0, 50.0)
