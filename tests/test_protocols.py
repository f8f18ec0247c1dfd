"""Named protocols (harness/data/protocols.py): each one on a hand-built split, numbers worked out by hand,
different from the lisa protocol's on the same predictions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helper_datasets import rle_of, write_reasonseg, write_refer

from harness import masks
from harness.data.datacheck import make_source
from harness.data.suites import SuiteError, load_suite
from harness.run.config import ModelSpec, RunConfig
from harness.run.runner import run
from harness.types import Sample

REFER_SUITE = {
    "name": "mini-refcoco", "version": 1,
    "source": {"format": "refer", "text": "raw", "splits": {
        "refcoco_val": {"dataset": "refcoco", "split_by": "unc", "split": "val"},
        "refcoco_testA": {"dataset": "refcoco", "split_by": "unc", "split": "testA"},
        "refcoco_testB": {"dataset": "refcoco", "split_by": "unc", "split": "testB"}}},
    "splits": {"refcoco_val": {}, "refcoco_testA": {"counts": {"images": 1, "objects": 1, "expressions": 2}},
               "refcoco_testB": {"counts": {"images": 1, "objects": 1, "expressions": 1}}},
}
REASONSEG_SUITE = {
    "name": "mini-reasonseg", "version": 1,
    "source": {"format": "reasonseg", "root": "reason_seg/ReasonSeg", "splits": {"val": {"folder": "val"}}},
    "splits": {"val": {}}, "conventions": {"sample_unit": "first_text", "exif": "apply"},
}


def _suite(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(json.dumps(raw))
    return path


def _scored(tmp_path: Path, suite: Path, protocol: str | None, answer: Callable[[Sample], Any], name: str) -> dict[str, Any]:
    """Results of a replay run whose answer for each sample of the protocol's splits is ``answer(sample)``
    (a boolean mask, or None for a failed prediction)."""
    loaded = load_suite(str(suite), protocol)
    source = make_source(loaded, tmp_path / "data")
    lines = []
    for split in loaded.splits:
        for s in source.samples(split):
            mask = answer(s)
            lines.append({"id": s.id, "mask": None if mask is None else rle_of(mask)})
    replay = tmp_path / f"{name}.jsonl"
    replay.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = RunConfig(models=(ModelSpec("m", f"replay:{replay}"),), suite=str(suite), splits=tuple(loaded.splits),
                       data_root=tmp_path / "data", out=tmp_path / name, bootstrap_rounds=0, protocol=protocol)
    outcome = run(config, render=False)
    doc = json.loads(Path(str(outcome.results_path)).read_text())
    assert doc["suite"].get("protocol") == (None if protocol in (None, "lisa") else protocol)  # results carry its name
    return dict(doc["results"]["m"])


def _gt(s: Sample) -> Any:
    return masks.decode(s.gt.mask).astype(bool)


def test_sa2va_runner_scores_testA_and_testB_as_one_test_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """testA: ref 3 (2 sentences, triangle T) answered exactly; testB: ref 5 (1 sentence, square S of 36 px)
    answered with nothing. lisa: testA cIoU 100, testB 0. sa2va-runner: one test split, cIoU = 2T / (2T + 36)."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    write_refer(tmp_path / "data")
    suite = _suite(tmp_path, REFER_SUITE)

    def answer(s: Sample) -> Any:
        return _gt(s) if s.meta["ref_id"] == 3 else _gt(s) & False

    lisa = _scored(tmp_path, suite, None, answer, "lisa")
    assert lisa["refcoco_testA"]["ciou"] == pytest.approx(100.0) and lisa["refcoco_testB"]["ciou"] == pytest.approx(0.0)
    sa2va = _scored(tmp_path, suite, "sa2va-runner", answer, "sa2va")
    assert list(sa2va) == ["refcoco_test"]
    triangle = masks.area(make_source(load_suite(str(suite)), tmp_path / "data").samples("refcoco_testA")[0].gt.mask)
    assert sa2va["refcoco_test"]["n"] == 3
    assert sa2va["refcoco_test"]["ciou"] == pytest.approx(100 * 2 * triangle / (2 * triangle + 36), abs=1e-6)
    assert load_suite(str(suite), "sa2va-runner").splits["refcoco_test"]["counts"] == {"images": 2, "objects": 2, "expressions": 3}


def test_unipixel_scores_every_text_and_a_failure_as_an_empty_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """a_img has two texts (target A), b_img one (target B); both texts of a_img answered exactly, b_img failed.
    lisa (text[0], failure IoU 0): gIoU (1 + 0) / 2 = 50. unipixel (every text, failure = empty mask, IoU 0 on
    a target): gIoU (1 + 1 + 0) / 3 = 66.7; cIoU A / (A + B) against 2A / (2A + B)."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    write_reasonseg(tmp_path / "data")
    suite = _suite(tmp_path, REASONSEG_SUITE)

    def answer(s: Sample) -> Any:
        return _gt(s) if "a_img" in s.image else None

    lisa = _scored(tmp_path, suite, None, answer, "lisa")["val"]
    uni = _scored(tmp_path, suite, "unipixel", answer, "uni")["val"]
    samples = make_source(load_suite(str(suite)), tmp_path / "data").samples("val")
    a, b = (masks.area(next(s for s in samples if k in s.image).gt.mask) for k in ("a_img", "b_img"))
    assert (lisa["n"], uni["n"]) == (2, 3) and (lisa["n_failed"], uni["n_failed"]) == (1, 1)
    assert lisa["giou"] == pytest.approx(50.0, abs=1e-4) and uni["giou"] == pytest.approx(200 / 3, abs=1e-4)
    assert lisa["ciou"] == pytest.approx(100 * a / (a + b), abs=1e-6)
    assert uni["ciou"] == pytest.approx(100 * 2 * a / (2 * a + b), abs=1e-6)


def test_visionreasoner_object_scores_one_sample_per_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """val: ref 2 (1 sentence, one polygon) answered exactly, ref 1 (2 sentences) answered with nothing. lisa, per
    sentence: gIoU (0 + 0 + 1) / 3 = 33.3; visionreasoner-object, per object: (0 + 1) / 2 = 50."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    write_refer(tmp_path / "data")
    raw = {**REFER_SUITE, "splits": {"refcoco_val": {}}, "source": {**REFER_SUITE["source"], "splits": {
        "refcoco_val": REFER_SUITE["source"]["splits"]["refcoco_val"]}}}
    suite = _suite(tmp_path, raw)

    def answer(s: Sample) -> Any:
        return _gt(s) if s.meta["ref_id"] == 2 else _gt(s) & False

    lisa = _scored(tmp_path, suite, None, answer, "lisa")["refcoco_val"]
    obj = _scored(tmp_path, suite, "visionreasoner-object", answer, "obj")["refcoco_val"]
    assert (lisa["n"], obj["n"]) == (3, 2)
    assert lisa["giou"] == pytest.approx(100 / 3, abs=1e-4) and obj["giou"] == pytest.approx(50.0, abs=1e-4)


def test_a_protocol_that_does_not_apply_or_is_unknown_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"protocol 'sa2va-runner' applies to suites of format refer, not 'shapes'"):
        load_suite("shapes", "sa2va-runner")
    with pytest.raises(SuiteError, match=r"unknown protocol 'himtok-ish'; known: lisa, sa2va-runner"):
        load_suite("refcoco", "himtok-ish")
    own = _suite(tmp_path, {**REFER_SUITE, "name": "own", "protocol": "sa2va-runner"})
    with pytest.raises(SuiteError, match=r"follows protocol 'sa2va-runner' already"):
        load_suite(str(own), "unipixel")
    assert load_suite("refcoco", "lisa").fingerprint == load_suite("refcoco").fingerprint  # lisa is the suite as written
    assert load_suite("refcoco", "unipixel").fingerprint != load_suite("refcoco").fingerprint  # never one run directory


def test_rows_of_two_protocols_are_labelled_and_never_compared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    write_refer(tmp_path / "data")
    raw = {**REFER_SUITE, "splits": {"refcoco_val": {}}, "source": {**REFER_SUITE["source"], "splits": {
        "refcoco_val": REFER_SUITE["source"]["splits"]["refcoco_val"]}}}
    suite = _suite(tmp_path, raw)
    _scored(tmp_path, suite, None, _gt, "lisa")
    _scored(tmp_path, suite, "visionreasoner-object", _gt, "obj")
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "lisa"), str(tmp_path / "obj"), "--verify", "none"]) == 2
    assert "protocol differs: " in capsys.readouterr().err
    assert main(["gate", str(tmp_path / "obj"), "--baseline", str(tmp_path / "lisa" / "results.json"), "--verify", "none"]) == 2
    assert "protocol differs: the run follows 'visionreasoner-object', the baseline 'lisa'" in capsys.readouterr().out
    assert main(["leaderboard", str(tmp_path / "lisa"), str(tmp_path / "obj"), "--out", str(tmp_path / "site")]) == 0
    pages = "".join(p.read_text() for p in (tmp_path / "site").glob("bench-*.html"))
    assert "(protocol visionreasoner-object)" in pages
    assert main(["report", str(tmp_path / "obj")]) == 0
    assert "(protocol visionreasoner-object)" in (tmp_path / "obj" / "report" / "index.html").read_text()


def test_himtok_merges_an_objects_sentences_and_binarises_its_polygons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """val: ref 1 (2 sentences, two overlapping polygons: union M, overlap O) answered with M; ref 2 (1 sentence,
    box R) answered with nothing. lisa (per sentence, polygons summed: target M - O): IoU (M - O) / M twice and 0,
    gIoU 2(M - O) / 3M, cIoU 2(M - O) / (2M + R). himtok (per object, merged sentences, gt > 0.5): IoU 1 and 0,
    gIoU 50, cIoU M / (M + R)."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    write_refer(tmp_path / "data")
    raw = {**REFER_SUITE, "splits": {"refcoco_val": {"counts": {"images": 1, "objects": 2, "expressions": 3}}},
           "source": {**REFER_SUITE["source"], "splits": {"refcoco_val": REFER_SUITE["source"]["splits"]["refcoco_val"]}}}
    suite = _suite(tmp_path, raw)

    def answer(s: Sample) -> Any:
        return _gt(s) if s.meta["ref_id"] == 1 else _gt(s) & False

    samples = make_source(load_suite(str(suite)), tmp_path / "data").samples("refcoco_val")
    one = next(s for s in samples if s.meta["ref_id"] == 1)
    m, o = masks.area(one.gt.mask), masks.area(one.gt.overlap)
    r = masks.area(next(s for s in samples if s.meta["ref_id"] == 2).gt.mask)
    assert o > 0  # the fixture's two polygons meet
    lisa = _scored(tmp_path, suite, None, answer, "lisa")["refcoco_val"]
    him = _scored(tmp_path, suite, "himtok", answer, "him")["refcoco_val"]
    assert (lisa["n"], him["n"]) == (3, 2)
    assert lisa["giou"] == pytest.approx(100 * 2 * (m - o) / (3 * m), abs=1e-4)
    assert lisa["ciou"] == pytest.approx(100 * 2 * (m - o) / (2 * m + r), abs=1e-6)
    assert him["giou"] == pytest.approx(50.0, abs=1e-6) and him["ciou"] == pytest.approx(100 * m / (m + r), abs=1e-6)
    merged = make_source(load_suite(str(suite), "himtok"), tmp_path / "data").samples("refcoco_val")
    assert [s.expression for s in merged] == ["Meet all the descriptions: 1. man on the left. 2.  The Tall Man . ",
                                              "Meet all the descriptions: 1. red box. "]
    # one sample per object: the official expressions count is the objects count, and the data is whole
    assert load_suite(str(suite), "himtok").splits["refcoco_val"]["counts"] == {"images": 1, "objects": 2, "expressions": 2}


def test_himtok_forces_ignore_pixels_into_the_prediction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """a_img answered with its target A exactly (its ignore hole G_a excluded from A), b_img (target B inside a large
    ignore region G_b) with an empty mask. lisa (ignore excluded): IoU 1 and 0, cIoU A / (A + B). himtok
    (mask_image[gt == 255] = 1, then gt > 0.5): IoU 1 and G_b / (B + G_b), cIoU (A + G_a + G_b) / (A + G_a + B + G_b)."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    write_reasonseg(tmp_path / "data")
    suite = _suite(tmp_path, REASONSEG_SUITE)

    def answer(s: Sample) -> Any:
        return _gt(s) if "a_img" in s.image else _gt(s) & False

    samples = make_source(load_suite(str(suite)), tmp_path / "data").samples("val")
    sa, sb = (next(s for s in samples if k in s.image) for k in ("a_img", "b_img"))
    a, b = masks.area(sa.gt.mask), masks.area(sb.gt.mask)
    ga, gb = masks.area(sa.gt.ignore), masks.area(sb.gt.ignore)
    assert min(a, b, ga, gb) > 0
    lisa = _scored(tmp_path, suite, None, answer, "lisa")["val"]
    him = _scored(tmp_path, suite, "himtok", answer, "him")["val"]
    assert lisa["giou"] == pytest.approx(50.0, abs=1e-4) and lisa["ciou"] == pytest.approx(100 * a / (a + b), abs=1e-6)
    assert him["giou"] == pytest.approx(100 * (1 + gb / (b + gb)) / 2, abs=1e-6)
    assert him["ciou"] == pytest.approx(100 * (a + ga + gb) / (a + ga + b + gb), abs=1e-6)


def _write_four_sentences(root: Path) -> None:
    """One image, one object with four sentences (ids 1-4), and a second image whose object has two."""
    import pickle

    from helper_datasets import COCO_DIR, _sent, coco_name, instances, jpeg

    refs = [{"ref_id": 1, "ann_id": 11, "image_id": 1, "category_id": 1, "split": "val",
             "sentences": [_sent(i, f"sentence {i}") for i in (1, 2, 3, 4)]},
            {"ref_id": 2, "ann_id": 21, "image_id": 2, "category_id": 1, "split": "val",
             "sentences": [_sent(i, f"sentence {i}") for i in (5, 6)]}]
    anns = {11: {"image_id": 1, "segmentation": [[2, 2, 20, 2, 20, 20, 2, 20]], "bbox": [2, 2, 18, 18]},
            21: {"image_id": 2, "segmentation": [[1, 1, 9, 1, 9, 9, 1, 9]], "bbox": [1, 1, 8, 8]}}
    sizes = {1: (24, 24), 2: (12, 12)}
    d = root / "refer_seg" / "refcoco"
    d.mkdir(parents=True)
    (d / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    (d / "instances.json").write_text(json.dumps(instances(sizes, anns)))
    for i, (h, w) in sizes.items():
        jpeg(root / COCO_DIR / coco_name(i), h, w, seed=i)


def test_glamm_3_scores_three_drawn_sentences_per_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Image 1: sentences 1-4 of one object, 1 and 2 answered exactly, 3 and 4 with nothing; image 2: sentences 5 and 6,
    answered exactly. lisa: gIoU (1 + 1 + 0 + 0 + 1 + 1) / 6 = 66.7. glamm-3: image 1 keeps the three of its four
    sentences that np.random.RandomState(crc32("0:" + its file name)).choice(4, 3, replace=False) draws, image 2 both
    of its two (fewer than three): with sentence 3 or 4 left out, gIoU (1 + 1 + 0 + 1 + 1) / 5 = 80; with 1 or 2 left
    out, (1 + 0 + 0 + 1 + 1) / 5 = 60."""
    import zlib

    import numpy as np
    from helper_datasets import coco_name

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    _write_four_sentences(tmp_path / "data")
    raw = {**REFER_SUITE, "splits": {"refcoco_val": {"counts": {"images": 2, "objects": 2, "expressions": 6}}},
           "source": {**REFER_SUITE["source"], "splits": {"refcoco_val": REFER_SUITE["source"]["splits"]["refcoco_val"]}}}
    suite = _suite(tmp_path, raw)

    def answer(s: Sample) -> Any:
        return _gt(s) & False if s.meta["sent_id"] in (3, 4) else _gt(s)

    rng = np.random.RandomState(zlib.crc32(f"0:{coco_name(1)}".encode()) & 0x7FFFFFFF)
    left_out = ({1, 2, 3, 4} - {int(i) + 1 for i in rng.choice(list(range(4)), size=3, replace=False)}).pop()
    lisa = _scored(tmp_path, suite, None, answer, "lisa")["refcoco_val"]
    glamm = _scored(tmp_path, suite, "glamm-3", answer, "glamm")["refcoco_val"]
    assert (lisa["n"], glamm["n"]) == (6, 5)
    assert lisa["giou"] == pytest.approx(400 / 6, abs=1e-4)
    assert glamm["giou"] == pytest.approx(80.0 if left_out in (3, 4) else 60.0, abs=1e-4)
    drawn = make_source(load_suite(str(suite), "glamm-3"), tmp_path / "data").samples("refcoco_val")
    assert sorted(s.meta["sent_id"] for s in drawn) == sorted({1, 2, 3, 4, 5, 6} - {left_out})
    assert load_suite(str(suite), "glamm-3").splits["refcoco_val"]["counts"] == {"images": 2, "objects": None, "expressions": None}


def test_a_sample_unit_a_reader_does_not_enumerate_is_refused(tmp_path: Path) -> None:
    raw = {**REASONSEG_SUITE, "name": "merged-reasonseg", "conventions": {"sample_unit": "object_merged"}}
    with pytest.raises(Exception, match=r"format 'reasonseg' has no sample unit 'object_merged'"):
        make_source(load_suite(str(_suite(tmp_path, raw))), tmp_path / "data")


def test_every_protocol_loads_on_every_builtin_suite_it_applies_to() -> None:
    """A protocol rewrites the suite's own source; the fetched copy's reader (``fetch``) is not rewritten, so it is
    left out under a protocol rather than checked against splits the protocol renamed (sa2va-runner's ``*_test``)."""
    from harness.data.protocols import PROTOCOLS
    from harness.data.suites import builtin_suites

    loaded = 0
    for suite in builtin_suites():
        for name, p in PROTOCOLS.items():
            fmt = str((load_suite(suite).raw.get("source") or {}).get("format"))
            if fmt not in p.formats:
                continue
            try:
                under = load_suite(suite, name)
            except SuiteError as exc:  # FP-RefCOCO has val splits only: nothing for sa2va-runner's test splits
                assert "evaluates the test splits, and this suite has none" in str(exc)
                continue
            assert under.fetch is None or name == "lisa"
            loaded += 1
    assert loaded >= 10
