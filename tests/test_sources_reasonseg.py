"""The ReasonSeg reader on LabelMe-style JSON files beside JPEGs, against LISA's get_mask_from_json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_datasets import cv2_reference_map, lisa_ciou_giou, write_reasonseg

from harness import masks
from harness.data.conventions import Conventions
from harness.data.sources import SourceError
from harness.data.sources.reasonseg import ReasonSegSource
from harness.data.suites import load_suite
from harness.score.metrics import ScoreArrays, ciou, giou
from harness.score.scoring import score_sample
from harness.types import Prediction

pytest.importorskip("cv2")

SPLITS = load_suite("reasonseg").source_params["splits"]


def source(root: Path, cache: Path, unit: str = "first_text", **params: Any) -> ReasonSegSource:
    return ReasonSegSource({"splits": SPLITS, **params}, Conventions(sample_unit=unit), root, cache)  # type: ignore[arg-type]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write_reasonseg(tmp_path / "data")


def test_first_text_ids_and_subsets(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    src = source(root, tmp_path / "cache")
    val = src.samples("val")
    assert [s.id for s in val] == ["reasonseg/val/a_img", "reasonseg/val/b_img"]
    assert val[0].expression == "what keeps the rain off? "  # text[0] as stored
    assert val[0].meta["is_sentence"] is False and val[1].meta["is_sentence"] is True
    assert val[0].image == str(base / "val" / "a_img.jpg")
    assert [s.id for s in src.samples("test-short")] == ["reasonseg/test/c_img"]
    assert [s.id for s in src.samples("test-long")] == ["reasonseg/test/d_img"]
    assert len(src.samples("test")) == 2
    stripped = source(root, tmp_path / "c2", text="lisa_strip").samples("val")
    assert stripped[0].expression == "what keeps the rain off?"
    every = source(root, tmp_path / "c3", unit="sentence").samples("val")
    assert [s.id for s in every] == ["reasonseg/val/a_img/0", "reasonseg/val/a_img/1", "reasonseg/val/b_img/0"]
    assert every[1].expression == "second text"


def test_mask_and_ignore_match_lisa_pixel_for_pixel(base: Path, tmp_path: Path) -> None:
    for s in source(tmp_path / "data", tmp_path / "cache").samples("val") + source(tmp_path / "data", tmp_path / "cache").samples("test"):
        h, w = s.gt.height, s.gt.width
        ref = cv2_reference_map(Path(s.image).with_suffix(".json"), h, w)
        assert np.array_equal(masks.decode(s.gt.mask), ref == 1)
        ignore = masks.decode(s.gt.ignore) if s.gt.ignore else np.zeros((h, w), bool)
        assert np.array_equal(ignore, ref == 255)
        assert not (masks.decode(s.gt.mask) & ignore).any()
    a, b = source(tmp_path / "data", tmp_path / "cache").samples("val")
    # the smaller ignore square is drawn over the larger target; the smaller target over the larger ignore
    assert not masks.decode(a.gt.mask)[15, 15] and masks.decode(a.gt.ignore)[15, 15]  # type: ignore[arg-type]
    assert masks.decode(b.gt.mask)[16, 18] and not masks.decode(b.gt.ignore)[16, 18]  # type: ignore[arg-type]
    assert a.gt.box is not None and b.gt.box is not None


def test_ciou_equals_lisa_reference_with_ignore(base: Path, tmp_path: Path) -> None:
    conv = Conventions(sample_unit="first_text")
    rng = np.random.default_rng(1)
    samples = source(tmp_path / "data", tmp_path / "cache").samples("val") + source(tmp_path / "data", tmp_path / "c").samples("test")
    outputs, targets, scores = [], [], []
    for _ in range(3):
        for s in samples:
            pred = rng.random((s.gt.height, s.gt.width)) < rng.random()
            outputs.append(pred.astype(np.uint8))
            targets.append(cv2_reference_map(Path(s.image).with_suffix(".json"), s.gt.height, s.gt.width))
            scores.append(score_sample(Prediction(mask=masks.encode(pred)), s.gt, conv))
    want_c, want_g = lisa_ciou_giou(outputs, targets)
    arr = ScoreArrays.of(scores)
    assert ciou(arr, conv) == pytest.approx(want_c, abs=1e-9)
    assert giou(arr) == pytest.approx(want_g, abs=1e-9)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", r"a_img\.json: malformed JSON"),
        ('{"text": [], "is_sentence": false, "shapes": []}', r"a_img\.json: 'text' must be a non-empty list"),
        ('{"text": ["x"], "is_sentence": false}', r"a_img\.json: 'shapes' must be a list"),
        ('{"text": ["x"], "is_sentence": "no", "shapes": []}', r"a_img\.json: 'is_sentence' must be true or false"),
        ('{"text": ["x"], "is_sentence": true, "shapes": [{"label": "target", "points": [[1, 2], "x"]}]}',
         r"a_img\.json: a polygon cannot be drawn"),
    ],
)
def test_malformed_json_names_the_file(base: Path, tmp_path: Path, text: str, match: str) -> None:
    (base / "val" / "a_img.json").write_text(text)
    with pytest.raises(SourceError, match=match):
        source(tmp_path / "data", tmp_path / "cache").samples("val")


def test_missing_files_are_named(base: Path, tmp_path: Path) -> None:
    (base / "val" / "b_img.json").unlink()
    with pytest.raises(SourceError, match=r"missing file.*b_img\.json"):
        source(tmp_path / "data", tmp_path / "cache").samples("val")
    with pytest.raises(SourceError, match=r"ReasonSeg folder .*train does not exist"):
        ReasonSegSource({}, Conventions(), tmp_path / "data", tmp_path / "cache").samples("train")
    (base / "test" / "c_img.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SourceError, match=r"c_img\.jpg is not a readable image"):
        source(tmp_path / "data", tmp_path / "cache").samples("test")
