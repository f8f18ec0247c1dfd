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
        scores.append(score_sample(Prediction(mask=masks.encode(p)), s.gt, conv))
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
