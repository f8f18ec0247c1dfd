"""``harness data check`` tells a good tree from a broken one; ``harness data layout`` shows what to put where."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helper_datasets import COCO_DIR, coco_name, jpeg, write_reasonseg, write_refer

from harness.cli import main

IMAGE1 = f"{COCO_DIR}/{coco_name(1)}"


def mini_suite(tmp_path: Path, val_expressions: int = 3) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: mini-refcoco
        version: 1
        source:
          format: refer
          splits:
            refcoco_val: {{dataset: refcoco, split: val}}
            refcoco_testA: {{dataset: refcoco, split: testA}}
        splits:
          refcoco_val: {{counts: {{images: 1, objects: 2, expressions: {val_expressions}}}}}
          refcoco_testA: {{counts: {{images: 1, objects: 1, expressions: 2}}}}
        """))
    return path


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    root = tmp_path / "data"
    write_refer(root)
    return root


def check(suite: Path | str, root: Path | None, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    args = ["data", "check", "--suite", str(suite), *(["--data-root", str(root)] if root else []), *extra]
    code = main(args)
    return code, capsys.readouterr().out


def test_a_good_tree_is_clean(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(mini_suite(tmp_path), tree, capsys)
    assert code == 0, out
    assert "refcoco_val: 1 images, 2 objects, 3 expressions: ok" in out and "all 2 split(s) ok" in out
    code, out = check(mini_suite(tmp_path), tree, capsys, "--no-decode", "--splits", "refcoco_testA")
    assert code == 0 and "refcoco_val" not in out
    config = tmp_path / "run.yaml"
    config.write_text(f"data_root: {tree}\n")  # the run config's data root
    code, out = check(mini_suite(tmp_path), None, capsys, "--config", str(config))
    assert code == 0 and f"data root: {tree}" in out


def test_missing_corrupt_and_wrong_size_images(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tree / IMAGE1).unlink()
    image2 = tree / COCO_DIR / coco_name(2)
    image2.write_bytes(image2.read_bytes()[:200])  # truncated JPEG
    code, out = check(mini_suite(tmp_path), tree, capsys)
    assert code == 1
    assert f"image {tree / IMAGE1} does not exist" in out
    assert f"image {image2} is corrupt or truncated" in out
    jpeg(tree / IMAGE1, 41, 60)  # one row too many
    jpeg(image2, 48, 32)
    code, out = check(mini_suite(tmp_path), tree, capsys)
    assert code == 1 and "is 60x41 (w x h) but the ground truth of 3 sample(s), e.g. refcoco/unc/val/1/11, is 60x40" in out


def test_wrong_counts_and_missing_annotations(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(mini_suite(tmp_path, val_expressions=4), tree, capsys)
    assert code == 1 and "expressions: 3 found, the official count is 4" in out
    (tree / "refer_seg/refcoco/instances.json").unlink()
    code, out = check(mini_suite(tmp_path), tree, capsys)
    assert code == 1 and f"missing annotation file {tree / 'refer_seg/refcoco/instances.json'}" in out


def test_the_real_refcoco_suite_on_a_tiny_tree(tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_DATA", str(tree))  # no flag: the environment names the data root
    code, out = check("refcoco", None, capsys)
    assert code == 1
    assert "refcoco_val: 1 images, 2 objects, 3 expressions: 3 problem(s)" in out
    assert "images: 1 found, the official count is 1500" in out
    assert f"missing annotation file {tree / 'refer_seg/refcoco+/refs(unc).p'}" in out
    assert f"missing annotation file {tree / 'refer_seg/refcocog/refs(umd).p'}" in out


def test_reasonseg_tree_and_no_data_root(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cv2")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    write_reasonseg(tmp_path / "data")
    code, out = check("reasonseg", tmp_path / "data", capsys, "--splits", "val,test-short")
    assert code == 1 and "val: 2 images, 2 objects, 2 expressions: 3 problem(s)" in out
    assert "test-short: 1 images, 1 objects, 1 expressions: ok" in out
    code, out = check("reasonseg", None, capsys, "--splits", "val")
    assert code == 1 and "needs a data root" in out


def test_layout_prints_the_tree_and_sources(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "layout", "refcoco"]) == 0
    out = capsys.readouterr().out
    assert "refer_seg/" in out and "refs(unc).p" in out and "refs(umd).p" in out and "train2014/" in out
    assert "lichengunc/refer" in out and "COCO 2014 train images" in out
    assert main(["data", "layout", "refcoco", "--data-root", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "[ok]" in out and "[MISSING]" in out
    for suite, needle in (("reasonseg", "reason_seg/"), ("groundingsuite", "GroundingSuite-Eval.jsonl"), ("grefcoco", "grefs(unc).json"),
                          ("refcoco-m", "refcoco-m/data/*.parquet"), ("shapes", "generated data")):
        assert main(["data", "layout", suite]) == 0
        assert needle in capsys.readouterr().out
