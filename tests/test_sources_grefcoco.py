"""The gRefCOCO reader (grefs JSON + instances.json) and the ReLA scoring rule on its samples."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_datasets import GREF_ANNS, GREF_IMAGES, GREF_REFS, write_grefcoco
from pycocotools import mask as mask_utils

from harness import masks
from harness.data.conventions import Conventions
from harness.data.sources import SourceError
from harness.data.sources.grefcoco import GRefCocoSource
from harness.data.suites import load_suite
from harness.score.metrics import summarize
from harness.score.scoring import score_sample
from harness.types import Prediction, Sample

SUITE = load_suite("grefcoco")


def source(root: Path, cache: Path, **params: Any) -> GRefCocoSource:
    return GRefCocoSource({**SUITE.source_params, **params}, SUITE.conventions, root, cache)


def rela_merged(ann_ids: list[int], crowd: bool = False) -> np.ndarray:
    """ReLA: per non-crowd annotation, valid polygons -> bitmask (any), then sum clamped to 1."""
    h, w = GREF_IMAGES[GREF_ANNS[ann_ids[0]]["image_id"]]
    out = np.zeros((h, w), dtype=np.uint8)
    for a in ann_ids:
        ann = GREF_ANNS[a]
        if ann.get("iscrowd") and not crowd:
            continue
        polys = [p for p in ann["segmentation"] if len(p) % 2 == 0 and len(p) >= 6]
        out += mask_utils.decode(mask_utils.frPyObjects(polys, h, w)).any(axis=2).astype(np.uint8)
    return np.clip(out, 0, 1).astype(bool)


def test_multi_and_no_target_samples(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_grefcoco(root)
    val = source(root, tmp_path / "cache").samples("val")
    assert [s.id for s in val] == ["grefcoco/unc/val/1/100", "grefcoco/unc/val/2/101", "grefcoco/unc/val/3/102", "grefcoco/unc/val/3/103"]
    multi, none, single = val[0], val[1], val[2]
    assert np.array_equal(masks.decode(multi.gt.mask), rela_merged([71, 72, 73]))
    assert multi.gt.box is None and len(multi.meta["boxes"]) == 2 and multi.meta["ann_ids_used"] == [71, 72]
    assert multi.gt.overlap is not None  # stored; the suite binarises it (gt_overlap binarise)
    assert none.no_target and masks.area(none.gt.mask) == 0 and (none.gt.height, none.gt.width) == (30, 40)
    assert single.gt.box == (1.0, 1.0, 10.0, 10.0) and not single.no_target
    assert [s.id for s in source(root, tmp_path / "cache").samples("testA")] == ["grefcoco/unc/testA/4/104"]
    crowd = source(root, tmp_path / "c2", crowd="include").samples("val")[0]
    assert np.array_equal(masks.decode(crowd.gt.mask), rela_merged([71, 72, 73], crowd=True))
    assert source(root, tmp_path / "c3", text="sent_raw").samples("val")[0].expression == "Both squares"


def rela_evaluate(samples: list[Sample], preds: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, float]:
    """ReLA refer_evaluation.py with "predicted no target" = an empty mask."""
    acc_i = acc_u = acc_iou = 0.0
    pr = {0.7: 0, 0.8: 0, 0.9: 0}
    nt = {"TP": 0, "TN": 0, "FP": 0, "FN": 0}
    targeted = 0
    for s, p, g in zip(samples, preds, truth):
        pred_nt = not p.any()
        inter, union = float((p & g).sum()), float((p | g).sum())
        if s.no_target:
            if pred_nt:
                nt["TP"] += 1
                acc_iou += 1
            else:
                nt["FN"] += 1
                acc_u += union
        else:
            if pred_nt:
                nt["FP"] += 1
                inter = 0
            else:
                nt["TN"] += 1
            iou = 0.0 if union == 0 else inter / union
            acc_iou += iou
            acc_i += inter
            acc_u += union
            targeted += 1
            for t in pr:
                pr[t] += iou >= t
    return {"giou": 100 * acc_iou / len(samples), "ciou": 100 * acc_i / acc_u, "n_acc": 100 * nt["TP"] / (nt["TP"] + nt["FN"]),
            "t_acc": 100 * nt["TN"] / (nt["TN"] + nt["FP"]), **{f"prec@{t}": 100 * c / targeted for t, c in pr.items()}}


def test_suite_conventions_reproduce_rela(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_grefcoco(root)
    conv: Conventions = SUITE.conventions
    samples = source(root, tmp_path / "cache").samples("val") * 3
    rng = np.random.default_rng(5)
    preds, truth, scores = [], [], []
    for k, s in enumerate(samples):
        g = masks.decode(s.gt.mask)
        if k % 4 == 0:
            p = np.zeros_like(g)  # says "no target"
        elif k % 4 == 1:
            p = g.copy()
            p[0, :] = True  # a near hit
        else:
            p = rng.random(g.shape) < 0.3
        preds.append(p)
        truth.append(g)
        scores.append(score_sample(Prediction(mask=masks.encode(p)), s.gt, conv, s.no_target))
    got = summarize(scores, conv, bootstrap_rounds=0)
    want = rela_evaluate(samples, preds, truth)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_pickled_grefs_are_read_safely_and_errors_name_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    d = write_grefcoco(root)
    (d / "grefs(unc).p").write_bytes(pickle.dumps(GREF_REFS, protocol=2))  # G_REFER prefers the pickle
    assert len(source(root, tmp_path / "cache").samples("val")) == 4
    (d / "grefs(unc).p").write_bytes(pickle.dumps(print))
    with pytest.raises(SourceError, match=r"grefs\(unc\)\.p: refused to load.*print"):
        source(root, tmp_path / "c2").samples("val")
    (d / "grefs(unc).p").unlink()
    (d / "grefs(unc).json").write_text(json.dumps([{"ref_id": 1}]))
    with pytest.raises(SourceError, match=r"grefs\(unc\)\.json: ref #0 lacks ann_id"):
        source(root, tmp_path / "c3").samples("val")
    refs = [dict(r) for r in GREF_REFS]
    refs[2]["ann_id"] = [999]
    (d / "grefs(unc).json").write_text(json.dumps(refs))
    with pytest.raises(SourceError, match=r"annotation 999 is not in .*instances\.json"):
        source(root, tmp_path / "c4").samples("val")


def write_with_empty_targets(root: Path) -> Path:
    """The tiny gRefCOCO plus two targeted refs of val whose target is empty: ref 5's only
    polygon rasterises to no pixel, ref 6 has ``ann_id: []``."""
    d = write_grefcoco(root)
    anns = {**GREF_ANNS, 82: {"image_id": 8, "segmentation": [[5, 5, 5.2, 5, 5.2, 5.2]], "bbox": [5, 5, 0.2, 0.2]}}
    inst = json.loads((d / "instances.json").read_text())
    inst["annotations"].append({"id": 82, "iscrowd": 0, "category_id": 1, "area": 0.02, **anns[82]})
    (d / "instances.json").write_text(json.dumps(inst))
    refs = [*GREF_REFS,  # ref 5: one polygon that rasterises to no pixel; ref 6: ann_id []
            {"ref_id": 5, "ann_id": [82], "image_id": 8, "category_id": [1], "split": "val",
             "sentences": [{"sent_id": 105, "sent": "dot"}]},
            {"ref_id": 6, "ann_id": [], "image_id": 7, "category_id": [], "split": "val", "sentences": [{"sent_id": 106, "sent": "ghost"}]}]
    (d / "grefs(unc).json").write_text(json.dumps(refs))
    return d


def test_no_target_is_the_dataset_flag_not_an_empty_mask(tmp_path: Path) -> None:
    """ReLA decides "no target" from ann_id [-1]; a targeted sample with an empty target and an
    empty prediction scores IoU 0 (union 0) and is a false "no target" in T-acc."""
    root = tmp_path / "data"
    write_with_empty_targets(root)
    with pytest.warns(UserWarning, match=r"grefs\(unc\)\.json: ref 6 has ann_id \[\] .*targeted"):
        val = source(root, tmp_path / "cache").samples("val")
    assert [s.id.split("/", 3)[3] for s in val] == ["1/100", "2/101", "3/102", "3/103", "5/105", "6/106"]
    dot, ghost = val[4], val[5]
    assert masks.area(dot.gt.mask) == 0 and masks.area(ghost.gt.mask) == 0
    assert not dot.no_target and not ghost.no_target and val[1].no_target
    conv: Conventions = SUITE.conventions
    preds = [masks.decode(s.gt.mask) for s in val]  # exact on the four with a target; empty on the no-target and ref 5
    ghost_pred = np.zeros_like(preds[5])
    ghost_pred[0, :4] = True  # ref 6: four pixels on an empty target
    preds[5] = ghost_pred
    scores = [score_sample(Prediction(mask=masks.encode(p)), s.gt, conv, s.no_target) for s, p in zip(val, preds)]
    assert scores[4].iou == 0.0 and scores[4].union == 0 and scores[4].no_target is False
    assert scores[1].iou == 1.0 and scores[1].no_target is True
    got = summarize(scores, conv, bootstrap_rounds=0)
    # By hand (ReLA): IoU 1, 1, 1, 1 (hits and the no-target TP), 0 (ref 5, U = 0), 0 (ref 6, I = 0, U = 4).
    assert got["giou"] == pytest.approx(100 * 4 / 6)
    target_pixels = sum(masks.area(val[k].gt.mask) for k in (0, 2, 3))
    assert got["ciou"] == pytest.approx(100 * target_pixels / (target_pixels + 4))
    assert got["n_no_target"] == 1 and got["n_acc"] == 100.0  # ref 2 only, predicted empty
    assert got["t_acc"] == pytest.approx(80.0)  # TN: refs 1, 3, 3, 6; FP: ref 5 (empty prediction)
    assert got["prec@0.7"] == pytest.approx(60.0) and got["prec@0.9"] == pytest.approx(60.0)  # 3 of 5 targeted
    assert got["n_targeted_empty_gt"] == 2
    want = rela_evaluate(val, preds, [masks.decode(s.gt.mask) for s in val])
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    # Deciding from the mask's area instead (the old rule) gives 83.3 gIoU: 16.7 points off ReLA.
    by_area = [score_sample(Prediction(mask=masks.encode(p)), s.gt, conv, masks.area(s.gt.mask) == 0) for s, p in zip(val, preds)]
    assert summarize(by_area, conv, bootstrap_rounds=0)["giou"] == pytest.approx(100 * 5 / 6)


def test_the_runner_records_the_flag_and_old_logs_fall_back_to_the_area(tmp_path: Path) -> None:
    from harness.run.predict import Predicted
    from harness.run.runner import records
    from harness.types import SampleScore

    root = tmp_path / "data"
    write_with_empty_targets(root)
    with pytest.warns(UserWarning):
        val = source(root, tmp_path / "cache").samples("val")
    [rec] = records([(val[4], Predicted(Prediction(mask=masks.empty(val[4].gt.height, val[4].gt.width))))], SUITE.conventions)
    assert rec["score"]["no_target"] is False and rec["score"]["iou"] == 0.0
    old = {k: v for k, v in rec["score"].items() if k != "no_target"}  # a log line written before the flag existed
    assert SampleScore.from_json(old).no_target is None
    res = summarize([SampleScore.from_json({**old, "iou": 1.0})], SUITE.conventions, bootstrap_rounds=0)
    assert res["n_no_target"] == 1 and res["n_acc"] == 100.0 and "n_targeted_empty_gt" not in res


def test_data_check_flags_targeted_samples_with_an_empty_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    write_with_empty_targets(root)
    suite = tmp_path / "mini-gref.yaml"
    suite.write_text("name: mini-gref\nversion: 1\nsource: {format: grefcoco, splits: {val: {split: val}}}\nsplits: {val: {}}\n"
                     "conventions: {targeted_empty_union: zero}\n")
    code = main(["data", "check", "--suite", str(suite), "--data-root", str(root)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "warning: " in out and "ref 6 has ann_id []" in out
    assert ("warning: 2 targeted sample(s) have an empty ground truth (no pixel), e.g. grefcoco/unc/val/5/105, grefcoco/unc/val/6/106: "
            "scored by the targeted empty-union rule (targeted_empty_union=zero), never as no-target") in out
