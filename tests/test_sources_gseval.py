"""The GroundingSuite-Eval reader on a JSONL file with RLE masks and unlabeled2017 JPEGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_datasets import lisa_ciou_giou, rle_of, write_gseval
from pycocotools import mask as mask_utils

from harness import masks
from harness.data.conventions import Conventions
from harness.data.sources import SourceError
from harness.data.sources.gseval import GSEvalSource, lens_mangled
from harness.data.suites import load_suite
from harness.score.metrics import ScoreArrays, ciou
from harness.score.scoring import score_sample
from harness.types import Prediction

SPLITS = load_suite("groundingsuite").source_params["splits"]


def source(root: Path, cache: Path, **params: Any) -> GSEvalSource:
    return GSEvalSource({"splits": SPLITS, **params}, Conventions(), root, cache)


def test_rows_become_samples(tmp_path: Path) -> None:
    root = tmp_path / "data"
    rows = write_gseval(root)
    src = source(root, tmp_path / "cache")
    every = src.samples("all")
    assert [s.id for s in every] == ["gseval/0", "gseval/1", "gseval/2", "gseval/3"]
    assert every[0].expression == rows[0]["caption"]
    assert every[0].image == str(root / "coco" / "unlabeled2017" / "000000000000.jpg")
    assert every[2].gt.box == (3.0, 4.0, 12.0, 12.0)
    assert every[1].meta["category"] == "part" and every[3].meta["class_id"] == 3
    for s, row in zip(every, rows):
        assert s.gt.mask == row["segmentation"] and s.gt.overlap is None
    assert [s.id for s in src.samples("stuff")] == ["gseval/0"]
    assert [s.id for s in src.samples("single")] == ["gseval/2"]
    assert source(root, tmp_path / "c2", query="label").samples("all")[1].expression == "thing 1"
    mangled = source(root, tmp_path / "c3", query="lens_mangled").samples("all")[0].expression
    assert mangled == lens_mangled(rows[0]["caption"]) == "th  the a where thing 0 ."


def test_a_list_of_rles_is_summed_like_lens(tmp_path: Path) -> None:
    root = tmp_path / "data"
    rows = write_gseval(root)
    a = np.zeros((20, 30), bool)
    a[0:10, 0:10] = True
    b = np.zeros((20, 30), bool)
    b[5:15, 5:15] = True
    rows[0]["segmentation"] = [rle_of(a), rle_of(b)]
    (root / "GroundingSuite-Eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = source(root, tmp_path / "cache").samples("all")[0]
    target = np.sum(mask_utils.decode([{**r, "counts": r["counts"].encode()} for r in rows[0]["segmentation"]]), axis=2)
    assert np.array_equal(masks.decode(s.gt.mask), target >= 1)
    assert np.array_equal(masks.decode(s.gt.overlap), target >= 2)  # type: ignore[arg-type]
    rng = np.random.default_rng(2)
    preds = [rng.random((20, 30)) < 0.4 for _ in range(4)]
    scores = [score_sample(Prediction(mask=masks.encode(p)), s.gt, Conventions()) for p in preds]
    assert ciou(ScoreArrays.of(scores), Conventions()) == pytest.approx(lisa_ciou_giou([p.astype(np.uint8) for p in preds],
                                                                                       [target.astype(np.uint8)] * 4)[0], abs=1e-9)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda text: text + "{broken\n", r"GroundingSuite-Eval\.jsonl: line 5 is not valid JSON"),
        (lambda text: text.replace('"caption"', '"cap"', 1), r"line 1 lacks caption"),
        (lambda text: text.replace('"counts": "', '"counts": "\\u00ff', 1), r"line 1: 'segmentation' cannot be decoded"),
        (lambda text: text.replace('"counts": "', '"counts": "zzzz', 1), r"line 1: 'segmentation' cannot be decoded"),
        (lambda text: text.replace('"unlabeled2017/', '"/etc/', 1), r"line 1: image_path '/etc/.*' must be a relative path"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, edit: Any, match: str) -> None:
    root = tmp_path / "data"
    write_gseval(root)
    path = root / "GroundingSuite-Eval.jsonl"
    path.write_text(edit(path.read_text()))
    with pytest.raises(SourceError, match=match):
        source(root, tmp_path / "cache").samples("all")


def test_missing_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"missing file.*GroundingSuite-Eval\.jsonl"):
        source(tmp_path, tmp_path / "cache").samples("all")
    with pytest.raises(SourceError, match="query='question'"):
        source(tmp_path, tmp_path / "cache", query="question").samples("all")
