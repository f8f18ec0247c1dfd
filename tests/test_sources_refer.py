"""The REFER reader on a tiny refcoco tree written in the real format (pickle + instances.json + JPEGs)."""

from __future__ import annotations

import json
import os
import pickle
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_datasets import REFER_ANNS, REFER_COUNTS, REFER_IMAGES, REFER_REFS, lisa_ciou_giou, lisa_target, write_refer

from harness import masks
from harness.cli import main
from harness.data.conventions import Conventions
from harness.data.sources import SourceError, source_class
from harness.data.sources.refer import ReferSource
from harness.score.metrics import ScoreArrays, ciou, giou
from harness.score.scoring import score_sample
from harness.types import Prediction, Sample

SPLITS = {"refcoco_val": {"split": "val"}, "refcoco_testA": {"split": "testA"}, "refcoco_testB": {"split": "testB"}}


def source(root: Path, cache: Path, unit: str = "sentence", **params: Any) -> ReferSource:
    return ReferSource({"dataset": "refcoco", "splits": SPLITS, **params}, Conventions(sample_unit=unit), root, cache)  # type: ignore[arg-type]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_refer(root)
    return root


def counts(samples: list[Sample]) -> dict[str, int]:
    return {"images": len({s.image for s in samples}), "objects": len({s.meta["object"] for s in samples}), "expressions": len(samples)}


def test_ids_expressions_boxes_and_counts(tree: Path, tmp_path: Path) -> None:
    src = source(tree, tmp_path / "cache")
    val = src.samples("refcoco_val")
    assert [s.id for s in val] == ["refcoco/unc/val/1/11", "refcoco/unc/val/1/12", "refcoco/unc/val/2/21"]
    assert [s.expression for s in val] == ["man on the left", " The Tall Man ", "red box"]  # sent["sent"] unchanged
    assert val[0].image == str(tree / "refer_seg/images/mscoco/images/train2014/COCO_train2014_000000000001.jpg")
    assert val[0].gt.box == (5.0, 5.0, 45.0, 35.0)
    assert val[2].gt.box == pytest.approx((40.5, 2.0, 58.0, 12.7))
    assert val[0].meta["sent_id"] == 11 and val[0].meta["ref_id"] == 1 and val[0].meta["text"] == "raw"
    assert val[0].gt is val[1].gt  # sentences of one ref share its ground truth
    for split, want in REFER_COUNTS.items():
        assert counts(src.samples(f"refcoco_{split}")) == want
    assert src.samples("refcoco_testA")[1].id == "refcoco/unc/testA/3/32"


def test_text_modes(tree: Path, tmp_path: Path) -> None:
    lower = source(tree, tmp_path / "c1", text="lisa_lower").samples("refcoco_val")
    assert [s.expression for s in lower] == ["man on the left", "the tall man", "red box"]
    assert lower[1].meta["sent"] == " The Tall Man "  # the stored sentence is kept
    raw = source(tree, tmp_path / "c2", text="sent_raw").samples("refcoco_val")
    assert raw[0].expression == "Man on the LEFT."
    with pytest.raises(SourceError, match="text='upper'"):
        source(tree, tmp_path / "c3", text="upper").samples("refcoco_val")


def test_object_unit_and_refer_split_semantics(tree: Path, tmp_path: Path) -> None:
    objs = source(tree, tmp_path / "cache", unit="object").samples("refcoco_val")
    assert [s.id for s in objs] == ["refcoco/unc/val/1", "refcoco/unc/val/2"]
    assert objs[0].meta["sent_ids"] == [11, 12]
    # REFER getRefIds(split="test") takes every split that contains "test"
    test = ReferSource({"dataset": "refcoco"}, Conventions(), tree, tmp_path / "c2").samples("test")
    assert sorted({s.meta["ref_id"] for s in test}) == [3, 5]


def test_ground_truth_is_lisas_polygon_sum(tree: Path, tmp_path: Path) -> None:
    for s in source(tree, tmp_path / "cache").samples("refcoco_val"):
        ann = REFER_ANNS[s.meta["ann_id"]]
        h, w = REFER_IMAGES[ann["image_id"]]
        target = lisa_target(ann["segmentation"], h, w)
        assert np.array_equal(masks.decode(s.gt.mask), target >= 1)
        overlap = masks.decode(s.gt.overlap) if s.gt.overlap else np.zeros((h, w), bool)
        assert np.array_equal(overlap, target >= 2)
        assert s.gt.ignore is None
    assert source(tree, tmp_path / "cache").samples("refcoco_val")[0].gt.overlap is not None


def test_ciou_equals_lisa_reference_on_the_same_predictions(tree: Path, tmp_path: Path) -> None:
    conv = Conventions()
    rng = np.random.default_rng(0)
    samples = [s for split in SPLITS for s in source(tree, tmp_path / "cache").samples(split)]
    outputs, targets, scores = [], [], []
    for k, s in enumerate(samples):
        ann = REFER_ANNS[s.meta["ann_id"]]
        h, w = REFER_IMAGES[ann["image_id"]]
        pred = rng.random((h, w)) < 0.5 if k % 3 else masks.decode(s.gt.mask)  # noise, and exact hits over overlap pixels
        outputs.append(pred.astype(np.uint8))
        targets.append(lisa_target(ann["segmentation"], h, w))
        scores.append(score_sample(Prediction(mask=masks.encode(pred)), s.gt, conv))
    want_c, want_g = lisa_ciou_giou(outputs, targets)
    arr = ScoreArrays.of(scores)
    assert ciou(arr, conv) == pytest.approx(want_c, abs=1e-9)
    assert giou(arr) == pytest.approx(want_g, abs=1e-9)


def test_index_cache_is_used_and_invalidated(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = source(tree, cache).samples("refcoco_val")
    assert list((cache / "index" / "refer").glob("*.jsonl"))

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("parsed again instead of reading the cache")

    monkeypatch.setattr(ReferSource, "build", boom)
    again = source(tree, cache).samples("refcoco_val")
    assert [(s.id, s.expression, s.gt, s.image, s.meta) for s in again] == [(s.id, s.expression, s.gt, s.image, s.meta) for s in first]
    # another data root with the same files reuses the cache, with paths under the new root
    moved = tmp_path / "moved"
    os.rename(tree, moved)
    assert source(moved, cache).samples("refcoco_val")[0].image.startswith(str(moved))
    # a changed annotation file is parsed again
    refs = [dict(r) for r in REFER_REFS]
    refs[1] = {**refs[1], "sentences": [{"sent_id": 21, "sent": "blue box"}]}
    (moved / "refer_seg/refcoco/refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(AssertionError, match="parsed again"):
        source(moved, cache).samples("refcoco_val")
    monkeypatch.undo()
    assert source(moved, cache).samples("refcoco_val")[2].expression == "blue box"


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: (d / "refs(unc).p").unlink(), r"missing file.*refs\(unc\)\.p"),
        (lambda d: (d / "refs(unc).p").write_bytes(b"\x80\x02garbage"), r"refs\(unc\)\.p: not a readable pickle"),
        (lambda d: (d / "refs(unc).p").write_bytes(pickle.dumps({"not": "a list"})), r"refs\(unc\)\.p: expected a pickled list"),
        (lambda d: (d / "refs(unc).p").write_bytes(pickle.dumps([{"ref_id": 1}])), r"refs\(unc\)\.p: ref #0 lacks ann_id"),
        (lambda d: (d / "refs(unc).p").write_bytes(pickle.dumps(os.system)), r"refs\(unc\)\.p: refused to load.*system"),
        (lambda d: (d / "instances.json").write_text("{not json"), r"instances\.json: malformed JSON"),
        (lambda d: (d / "instances.json").write_text(json.dumps({"images": []})), r"instances\.json: not a COCO instances file"),
        (lambda d: (d / "instances.json").write_text(json.dumps({"images": [], "annotations": []})),
         r"image 1 is not in .*instances\.json"),
    ],
)
def test_broken_files_give_errors_naming_them(tree: Path, tmp_path: Path, damage: Any, match: str) -> None:
    damage(tree / "refer_seg" / "refcoco")
    with pytest.raises(SourceError, match=match):
        source(tree, tmp_path / "cache").samples("refcoco_val")


def test_no_data_root_and_unknown_parameters(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="--data-root"):
        ReferSource({}, Conventions(), None, tmp_path).samples("val")
    with pytest.raises(SourceError, match=r"unknown key.*colour"):
        ReferSource({"colour": 1}, Conventions(), tmp_path, tmp_path)
    with pytest.raises(SourceError, match=r"no entry in source\.splits"):
        source(tmp_path, tmp_path).samples("refcoco+_val")
    assert source_class("refer") is ReferSource


def mini_suite(path: Path) -> Path:
    path.write_text(textwrap.dedent("""\
        name: mini-refcoco
        version: 1
        source:
          format: refer
          splits:
            refcoco_val: {dataset: refcoco, split_by: unc, split: val}
            refcoco_testA: {dataset: refcoco, split_by: unc, split: testA}
        splits:
          refcoco_val: {counts: {images: 1, objects: 2, expressions: 3}}
          refcoco_testA: {counts: {images: 1, objects: 1, expressions: 2}}
        conventions: {sample_unit: sentence}
        published:
          - {model: x, split: refcoco_val, metric: ciou, value: 1.0, source: "a test"}
        """))
    return path


def test_harness_run_end_to_end_on_a_refer_tree(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    suite = mini_suite(tmp_path / "mini.yaml")
    assert main(["run", "--models", "oracle-box,empty", "--suite", str(suite), "--data-root", str(tree), "--out", str(out),
                 "--no-report"]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert results["oracle-box"]["refcoco_val"]["n"] == 3 and results["empty"]["refcoco_testA"]["n"] == 2
    assert results["empty"]["refcoco_val"]["ciou"] == 0.0
    assert results["oracle-box"]["refcoco_val"]["ciou"] > 50.0
    lines = (out / "oracle-box" / "refcoco_val.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["id"] == "refcoco/unc/val/1/11"
    # the environment variable works as the data root too
    monkeypatch.setenv("HARNESS_DATA", str(tree))
    assert main(["run", "--models", "empty", "--suite", str(suite), "--out", str(tmp_path / "run2"), "--no-report"]) == 0
