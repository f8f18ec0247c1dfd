"""The gallery's pieces: which samples it picks and why, the overlays' colours, the box in pixels with the
model's own space named, the anchors and the folding of long chains of thought."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
from helper_runs import index_records
from PIL import Image

from harness import masks
from harness.adapter import box_from_pixels, box_to_pixels
from harness.publish.colours import model_colours
from harness.publish.report.gallery import FOLD_CHARS, Thumbnailer, anchor, box_text, folds, select
from harness.types import GroundTruth, Sample


def _rec(sid: str, iou: float, no_target: bool = False) -> dict[str, Any]:
    ok = {"mask": {"size": [1, 1], "counts": "01"}}  # a prediction with a mask: not a failure
    return {"id": sid, "score": {"iou": iou, "gt_empty": no_target, "no_target": no_target}, "prediction": ok}


def test_no_target_samples_only_where_a_model_got_them_wrong_and_reference_lines_never_decide() -> None:
    records = {
        "model": {"val": [_rec("right-absent", 1.0, True), _rec("wrong-absent", 0.0, True), _rec("hit", 0.9), _rec("miss", 0.1)]},
        "full": {"val": [_rec("right-absent", 0.0, True), _rec("wrong-absent", 0.0, True), _rec("hit", 0.2), _rec("miss", 0.3)]},
        "oracle-box": {"val": [_rec("right-absent", 1.0, True), _rec("wrong-absent", 1.0, True), _rec("hit", 0.8), _rec("miss", 0.95)]},
    }
    picks = select(index_records(records), 4, reference={"full", "oracle-box"})
    shown = {sid for keys in picks.values() for _, sid in keys}
    assert "right-absent" not in shown  # only `full` (a reference line) got it wrong
    assert "wrong-absent" in shown
    # One real model: it disagrees with the best reference line, not with `empty` or `full`.
    assert picks["disagreed"][("val", "wrong-absent")] == "model 0.0% vs oracle-box 100.0%"
    assert next(iter(picks["disagreed"])) == ("val", "wrong-absent")
    assert all(why.startswith("worst of model") for why in picks["worst"].values())
    assert all("full" not in why for keys in picks.values() for why in keys.values())


def test_worst_takes_each_models_lowest_in_turn() -> None:
    records = {
        "a": {"val": [_rec("s1", 0.0), _rec("s2", 0.1), _rec("s3", 0.9), _rec("s4", 0.9)]},
        "b": {"val": [_rec("s1", 0.5), _rec("s2", 0.6), _rec("s3", 0.2), _rec("s4", 0.95)]},
    }
    picks = select(index_records(records), 3)
    assert list(picks["disagreed"]) == [("val", "s3"), ("val", "s1"), ("val", "s2")]  # spreads 0.7, 0.5, 0.5 (by id)
    assert picks["worst"] == {("val", "s4"): "worst of a: IoU 90.0%"}  # no sample twice: s4 is all that is left
    records["b"]["val"] = [_rec(s, v) for s, v in (("s1", 0.0), ("s2", 0.1), ("s3", 0.9), ("s4", 0.9))]  # no disagreement
    worst = select(index_records(records), 3)["worst"]
    assert list(worst.items()) == [(("val", "s1"), "worst of a: IoU 0.0%"), (("val", "s2"), "worst of b: IoU 10.0%"),
                                   (("val", "s3"), "worst of a: IoU 90.0%")]


def test_box_in_pixels_names_the_space_the_model_answered_in() -> None:
    answered = (6.0, 696.0, 228.0, 992.0)
    px = box_to_pixels(answered, "norm1000", 320, 240)
    assert box_from_pixels(px, "norm1000", 320, 240) == pytest.approx(answered)
    assert box_text(list(px), "norm1000", 320, 240) == "box [1.9, 167, 73, 238.1] px (model answered [6, 696, 228, 992] in norm1000)"
    assert box_text([0.5, 0.25, 0.75, 1.0], "norm1", None, None) == "box [0.5, 0.2, 0.8, 1] px (the model answered in norm1)"
    assert box_text([10, 20, 30, 40], "pixel", 320, 240) == "box [10, 20, 30, 40] px"
    assert box_text(None, "pixel", 320, 240) is None
    assert box_text([1.0, None, 3.0, 4.0], "pixel", 320, 240) == "box not finite (1.0, nan, 3.0, 4.0)"


def test_anchors_are_fragment_safe_and_unique() -> None:
    taken: set[str] = set()
    assert anchor("sample", ("val", "coco/12 <a>"), taken) == "sample-val-coco-12-a"
    assert anchor("sample", ("val", "coco/12 (a)"), taken) == "sample-val-coco-12-a-2"  # the same once made safe
    assert anchor("reasoning-m", ("val", "x"), taken) == "reasoning-m-val-x"


def test_long_reasoning_folds() -> None:
    assert not folds(None) and not folds("short")
    assert folds("w " * FOLD_CHARS) and folds("a\nb\nc\nd\ne\nf")


def _pixels(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")).astype(int)


def _near(arr: np.ndarray, rgb: tuple[int, int, int], tol: int = 60) -> int:
    return int((np.abs(arr - np.array(rgb)).sum(axis=-1) < tol).sum())


def test_overlays_fill_and_outline_in_the_models_colour_and_dash_the_ground_truth(tmp_path: Any) -> None:
    h, w = 60, 80
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 1] = 200  # a green image: the old green ground truth vanished on it
    path = tmp_path / "img.png"
    Image.fromarray(img).save(path)
    gt = np.zeros((h, w), bool)
    gt[10:40, 10:50] = True
    pred = np.zeros((h, w), bool)
    pred[20:50, 30:70] = True
    sample = Sample("s", str(path), "the box", GroundTruth(masks.encode(gt)), "toy", "val")
    colour = model_colours(["m"])["m"]
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    thumbs = Thumbnailer()
    gt_panel = _pixels(thumbs.overlay(sample))
    assert _near(gt_panel, (255, 255, 255)) > 20 and _near(gt_panel, (0, 0, 0)) > 20  # white dashes on black
    assert _near(gt_panel, rgb) == 0
    panel = _pixels(thumbs.overlay(sample, masks.encode(pred), [30.0, 20.0, 70.0, 50.0], colour))
    assert _near(panel, rgb) > 100  # the contour and the box in the model's colour
    inside = panel[30:45, 55:65]  # the filled mask, away from its contour: the image tinted towards the colour
    blend = 0.6 * np.array([0, 200, 0]) + 0.4 * np.array(rgb)
    assert np.abs(inside.mean(axis=(0, 1)) - blend).max() < 25
