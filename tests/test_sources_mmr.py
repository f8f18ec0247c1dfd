"""The MMR reader on JSON files in MMR's format (questions, per-target RLE answers) with COCO 2017 JPEGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_datasets import jpeg, rle_of

from harness import masks
from harness.cli import main
from harness.data.conventions import Conventions
from harness.data.sources import SourceError
from harness.data.sources.mmr import MMRSource
from harness.data.suites import load_suite
from harness.score.metrics import ScoreArrays, ciou, giou
from harness.score.scoring import score_sample
from harness.types import Prediction

SUITE = load_suite("mmr")
H, W = 20, 30


def _box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[top:bottom, left:right] = True
    return m


# Image 9: a mug (rows 2..12, cols 2..14) with its handle inside it (rows 4..8, cols 10..14), and a spoon.
MUG, HANDLE, SPOON = _box(2, 2, 12, 14), _box(4, 10, 8, 14), _box(14, 20, 18, 28)


def _ann(mask: np.ndarray, name: str) -> dict[str, Any]:
    ys, xs = np.nonzero(mask)
    return {"segmentation": rle_of(mask), "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
                                                   float(ys.max() + 1 - ys.min())],
            "category_name": name, "category_id": 1, "image_id": 9}


def write_mmr(root: Path) -> list[dict[str, Any]]:
    images = [
        {"file_name": "train2017/000000000009.jpg", "height": H, "width": W, "image_id": 9, "coco_url": "",
         "questions": ["What would you hold to drink from it?", "Where would you put a spoon after stirring?",
                       "Which parts let you grip things here?"],
         "answers": [[_ann(MUG, "mug"), _ann(HANDLE, "mug:handle")], [_ann(SPOON, "spoon")], [_ann(HANDLE, "mug:handle")]],
         "text_answers": ["The {seg} and its {seg}.", "The {seg}.", "The {seg}."]},
        {"file_name": "val2017/000000000042.jpg", "height": H, "width": W, "image_id": 42, "coco_url": "",
         "questions": ["What can be used for stirring?"], "answers": [[_ann(SPOON, "spoon")]], "text_answers": ["The {seg}."]},
    ]
    (root / "MMR").mkdir(parents=True, exist_ok=True)
    (root / "MMR" / "MMR_val.json").write_text(json.dumps(images))
    (root / "MMR" / "MMR_test_part_only.json").write_text(json.dumps([{**images[0], "questions": images[0]["questions"][2:],
                                                                        "answers": images[0]["answers"][2:]}]))
    for row in images:
        jpeg(root / "refer_seg" / "images" / "mscoco" / "images" / row["file_name"], H, W, seed=row["image_id"])
    return images


def source(root: Path, cache: Path) -> MMRSource:
    return MMRSource(dict(SUITE.source_params), SUITE.conventions, root, cache)


def test_each_question_is_a_sample_whose_target_is_the_union_of_its_answers(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_mmr(root)
    val = source(root, tmp_path / "cache").samples("val")
    assert [s.id for s in val] == ["mmr/val/9/0", "mmr/val/9/1", "mmr/val/9/2", "mmr/val/42/0"]
    assert val[0].expression == "What would you hold to drink from it?"
    assert val[0].image == str(root / "refer_seg/images/mscoco/images/train2017/000000000009.jpg")
    # The handle lies inside the mug: the union is the mug, and no pixel is a "two polygons" overlap.
    assert np.array_equal(masks.decode(val[0].gt.mask), MUG | HANDLE) and val[0].gt.overlap is None
    assert val[0].gt.box == (2.0, 2.0, 14.0, 12.0)
    assert [s.meta["granularity"] for s in val] == ["mixed", "object", "part", "object"]
    assert (val[0].meta["targets"], val[0].meta["parts"]) == (2, 1)
    assert val[0].query().meta == {"is_sentence": True, "object": "9/0", "image_id": 9, "text_index": 0}  # no answer leaks
    assert [s.id for s in source(root, tmp_path / "cache").samples("test_part_only")] == ["mmr/test_part_only/9/0"]


def test_scores_worked_out_by_hand(tmp_path: Path) -> None:
    """A model that finds only the handle for question 0 and the spoon everywhere else.

    Q0: target = mug (120 px), prediction = handle (16 px): I 16, U 120, IoU 0.1333.
    Q1: spoon (32 px) exactly: I 32, U 32, IoU 1.  Q2: target handle (16), prediction spoon: I 0, U 48, IoU 0.
    Q3 (image 42): spoon exactly: IoU 1.  gIoU = (0.13333 + 1 + 0 + 1) / 4 = 53.33 %; cIoU = 80 / 232 = 34.48 %.
    """
    root = tmp_path / "data"
    write_mmr(root)
    val = source(root, tmp_path / "cache").samples("val")
    preds = [HANDLE, SPOON, SPOON, SPOON]
    conv = SUITE.conventions
    arr = ScoreArrays.of([score_sample(Prediction(mask=masks.encode(p)), s.gt, conv) for s, p in zip(val, preds)])
    eps = conv.giou_eps  # LISA's I / (U + 1e-5) per sample
    assert giou(arr) == pytest.approx(100 * (16 / (120 + eps) + 2 * 32 / (32 + eps) + 0) / 4, abs=1e-9)
    assert ciou(arr, conv) == pytest.approx(100 * (16 + 32 + 0 + 32) / (120 + 32 + 48 + 32), abs=1e-9)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda images: images[0].pop("answers"), r"MMR_val\.json: image 0 lacks answers"),
        (lambda images: images[0]["answers"].pop(), r"image 0: 'questions' and 'answers' must be lists of equal length \(got 3 and 2\)"),
        (lambda images: images[1]["answers"][0][0].update(segmentation={"size": [H, W], "counts": "\u00ffzz"}),
         r"image 1, question 0, target 0"),
        (lambda images: images[1]["answers"][0][0].update(segmentation={"size": [H + 1, W], "counts": "0"}),
         r"image 1, question 0, target 0"),
        (lambda images: images[0].update(file_name="../../etc/passwd"), r"image 0: file_name '../../etc/passwd' must be a relative path"),
        (lambda images: images[1].update(answers=[[]]), r"image 1, question 0: its answer must be a non-empty list"),
    ],
)
def test_malformed_files_name_the_file_and_the_place(tmp_path: Path, edit: Any, match: str) -> None:
    root = tmp_path / "data"
    images = write_mmr(root)
    edit(images)
    (root / "MMR" / "MMR_val.json").write_text(json.dumps(images))
    with pytest.raises(SourceError, match=match):
        source(root, tmp_path / "cache").samples("val")


def test_a_truncated_file_and_a_missing_file_are_named(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_mmr(root)
    path = root / "MMR" / "MMR_val.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(SourceError, match=r"MMR_val\.json: not a JSON file"):
        source(root, tmp_path / "cache").samples("val")
    with pytest.raises(SourceError, match=r"missing file\(s\): .*MMR_test_mixed\.json"):
        source(root, tmp_path / "cache").samples("test_mixed")


def test_data_check_passes_on_the_fixture_and_a_replay_run_scores_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    write_mmr(root)
    # The shipped suite with the fixture's own counts (the official val count is 8,194 questions).
    suite = tmp_path / "mini-mmr.yaml"
    raw = SUITE.raw
    suite.write_text(json.dumps({**raw, "splits": {"val": {"counts": {"images": 2, "objects": None, "expressions": 4}}},
                                 "default_splits": ["val"], "published": [p for p in raw["published"] if p["split"] == "val"]}))
    assert main(["data", "check", "--suite", str(suite), "--data-root", str(root)]) == 0, capsys.readouterr().out
    replay = tmp_path / "replay.jsonl"
    preds = {"mmr/val/9/0": HANDLE, "mmr/val/9/1": SPOON, "mmr/val/9/2": SPOON, "mmr/val/42/0": SPOON}
    replay.write_text("".join(json.dumps({"id": i, "mask": rle_of(m)}) + "\n" for i, m in preds.items()))
    out = tmp_path / "run"
    assert main(["run", "--models", f"replay:{replay}", "--suite", str(suite), "--data-root", str(root), "--out", str(out),
                 "--no-report"]) == 0
    [res] = [by["val"] for by in json.loads((out / "results.json").read_text())["results"].values()]
    assert res["giou"] == pytest.approx(100 * (16 / 120 + 2) / 4, abs=1e-4)
    assert res["ciou"] == pytest.approx(100 * 80 / 232, abs=1e-6)
    assert Conventions.from_dict(SUITE.conventions.to_dict()) == SUITE.conventions
