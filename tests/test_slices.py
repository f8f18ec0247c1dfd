"""Every slice definition on hand-built samples, and the slices section of results.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness import masks
from harness.data.conventions import Conventions
from harness.data.suites import load_suite
from harness.score.slices import SliceError, assign, load_slices, slice_metrics, words
from harness.types import GroundTruth, Sample, SampleScore

SHAPES = load_suite("shapes")


def sample(i: int, expression: str = "the thing", area: int = 0, *, size: tuple[int, int] = (200, 200), no_target: bool = False,
           **meta: object) -> Sample:
    """A sample whose ground truth covers the first ``area`` pixels (column-major) of an h x w image."""
    h, w = size
    flat = np.zeros(h * w, dtype=np.uint8)
    flat[:area] = 1
    m = np.ascontiguousarray(flat.reshape(w, h).T)
    return Sample(id=f"t/{i:03d}", image="x.png", expression=expression, gt=GroundTruth(mask=masks.encode(m)), dataset="t",
                  split="val", no_target=no_target, meta=dict(meta))


def members(by_label: dict[str, np.ndarray], samples: list[Sample]) -> dict[str, list[str]]:
    return {label: [samples[i].id for i in np.flatnonzero(m)] for label, m in by_label.items()}


DEFS = load_slices(SHAPES)


def test_coco_area_bounds_are_32_and_96_squared() -> None:
    ss = [sample(0, area=1023), sample(1, area=1024), sample(2, area=9216), sample(3, area=9217), sample(4, area=0, no_target=True)]
    got = members(assign(ss, DEFS)["size_coco"], ss)
    assert got == {"small": ["t/000"], "medium": ["t/001", "t/002"], "large": ["t/003"]}  # the empty target in none


def test_relative_area_terciles() -> None:
    # Relative areas 0.01..0.06 on a 100 x 100 image and 1400 / 40000 = 0.035 on a 200 x 200 one (the
    # no-target sample is left out): sorted .01 .02 .03 .035 .04 .05 .06, quantiles 1/3 and 2/3 at
    # positions 2 and 4 = 0.03 and 0.04; lower <= 0.03 < middle <= 0.04 < upper.
    ss = [sample(k, area=100 * k, size=(100, 100)) for k in range(1, 7)]
    ss.append(sample(7, area=0, no_target=True))
    ss.append(sample(8, area=1400, size=(200, 200)))
    got = members(assign(ss, DEFS)["size_relative"], ss)
    assert got == {"lower third": ["t/001", "t/002", "t/003"], "middle third": ["t/004", "t/008"], "upper third": ["t/005", "t/006"]}


def test_expression_length_in_words() -> None:
    assert words("The man's LEFT arm, isn't it?") == ["the", "man's", "left", "arm", "isn't", "it"]
    ss = [sample(0, "dog"), sample(1, "the big dog"), sample(2, "the dog on the left"), sample(3, "a b c d e f g"),
          sample(4, " ".join(["w"] * 11))]
    got = members(assign(ss, DEFS)["expression_length"], ss)
    assert got == {"1-3 words": ["t/000", "t/001"], "4-6 words": ["t/002"], "7-10 words": ["t/003"], "11+ words": ["t/004"]}


def test_expression_kind_word_lists() -> None:
    ss = [sample(0, "the man on the left"), sample(1, "red car"), sample(2, "the taller one"), sample(3, "the one that isn't red"),
          sample(4, "a cat in front of the sofa"), sample(5, "the leftovers"), sample(6, "a frontal view")]
    got = members(assign(ss, DEFS)["expression_kind"], ss)
    # whole words only ("leftovers" and "frontal" match nothing); phrases; "*n't" matches a word's end
    assert got == {"spatial": ["t/000", "t/004"], "attribute": ["t/001", "t/003"], "comparative": ["t/002"], "negation": ["t/003"]}


def test_category_from_the_first_metadata_key_present() -> None:
    ss = [sample(0, category="dog"), sample(1, category_id=3), sample(2), sample(3, category="dog", category_id=18)]
    got = members(assign(ss, DEFS)["category"], ss)
    assert got == {"3": ["t/001"], "dog": ["t/000", "t/003"]}
    assert "category" not in assign([sample(0), sample(1)], DEFS)  # no dataset category: no family


def test_no_target_vs_targeted() -> None:
    ss = [sample(0, area=5), sample(1, no_target=True), sample(2, area=7)]
    assert members(assign(ss, DEFS)["target"], ss) == {"targeted": ["t/000", "t/002"], "no target": ["t/001"]}


def test_sentences_per_object() -> None:
    ss = [sample(0, object="a"), sample(1, object="b"), sample(2, object="b"), sample(3, object="c"), sample(4, object="c"),
          sample(5, object="c"), sample(6, object="c")]
    got = members(assign(ss, DEFS)["sentences_per_object"], ss)
    assert got == {"1 per object": ["t/000"], "2 per object": ["t/001", "t/002"], "3+ per object": ["t/003", "t/004", "t/005", "t/006"]}
    assert "sentences_per_object" not in assign([sample(0), sample(1, object="a")], DEFS)


def test_the_shapes_suite_extends_the_default_list() -> None:
    assert [f.name for f in DEFS.families][-1] == "generator_kind"
    ss = [sample(0, kind="spatial"), sample(1, kind="attribute"), sample(2, kind="spatial")]
    assert members(assign(ss, DEFS)["generator_kind"], ss) == {"attribute": ["t/001"], "spatial": ["t/000", "t/002"]}


def score(inter: int, union: int) -> SampleScore:
    return SampleScore(intersection=inter, union=union, gt_area=union, pred_area=inter, iou=inter / (union + 1e-5), gt_empty=False,
                       pred_empty=inter == 0, failed=False, parse_failed=False)


def test_slice_metrics_have_n_and_an_interval_only_when_large_enough() -> None:
    conv = Conventions()
    ss = [sample(i, "dog" if i < 12 else "the big brown dog", area=10) for i in range(15)]
    scores = {s.id: score(5 if i < 12 else 10, 10) for i, s in enumerate(ss)}
    del scores["t/014"]  # not predicted: out of n, still in n_expected
    out = slice_metrics(scores, ss, DEFS, conv, bootstrap_rounds=50)["expression_length"]
    short, long = out["1-3 words"], out["4-6 words"]
    assert short["n"] == 12 and short["ciou"] == pytest.approx(50.0, abs=1e-6) and "ciou_ci95" in short
    assert long == {"n": 2, "n_ciou": 2, "n_giou": 2, "ciou": pytest.approx(100.0), "giou": pytest.approx(100.0, abs=1e-3),
                    "n_expected": 3}


def test_a_per_suite_file_overrides_by_name(tmp_path: Path) -> None:
    extra = tmp_path / "x.yaml"
    extra.write_text("min_n: 3\nword_lists: {negation: [nope]}\nslices:\n  - {name: target, by: words, bins: [[1, 2]]}\n")
    defs = load_slices(SHAPES, [*DEFS.sources[:1], extra])
    assert defs.min_n == 3 and defs.word_lists["negation"] == ("nope",)
    assert [f.by for f in defs.families if f.name == "target"] == ["words"]


@pytest.mark.parametrize("text, message", [
    ("slices:\n  - {name: x, by: colour}\n", "needs a name and `by`"),
    ("slices:\n  - {name: x, by: words}\n", "needs bins"),
    ("slices:\n  - {name: x, by: word_lists, lists: [nope]}\n", "unknown word lists"),
    ("word_lists: {negation: [not, no]}\n", "quote YAML booleans"),
    ("version: 2\n", "version 2"),
])
def test_bad_definitions_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(SliceError, match=message) as info:
        load_slices(SHAPES, [bad])
    assert str(bad) in str(info.value)


def test_results_json_carries_the_versioned_slices(isolated: Path) -> None:
    from conftest import write_suite

    from harness.cli import main

    suite = write_suite(isolated, val=6, test=2)
    (isolated / "slices").mkdir()  # a user suite's own slices beside its file
    (isolated / "slices" / "mini.yaml").write_text("slices:\n  - {name: generator_kind, by: meta, keys: [kind]}\n")
    assert main(["run", "--models", "shapes-reasoner,empty", "--suite", str(suite), "--out", "r", "--no-report"]) == 0
    doc = json.loads((isolated / "r" / "results.json").read_text())
    sl = doc["slices"]
    assert sl["version"] == 1 and sl["definitions"]["families"][-1]["name"] == "generator_kind"
    for model in ("shapes-reasoner", "empty"):
        val = sl["results"][model]["val"]
        whole = doc["results"][model]["val"]
        target = val["target"]
        assert sum(v["n"] for v in target.values()) == whole["n"]
        assert sum(v["n"] for v in val["generator_kind"].values()) == whole["n"]
        for by_label in val.values():
            for res in by_label.values():
                assert ("ciou_ci95" in res) == (res["n"] >= sl["definitions"]["min_n"])
    # the same slices hold the same samples for both models
    assert {f: {k: v["n_expected"] for k, v in d.items()} for f, d in sl["results"]["empty"]["val"].items()} == \
        {f: {k: v["n_expected"] for k, v in d.items()} for f, d in sl["results"]["shapes-reasoner"]["val"].items()}


def test_slice_intervals_against_a_direct_computation() -> None:
    # 14 samples, 11 short expressions (a slice with an interval) and 3 long ones (too few: none).
    ss = [sample(i, "dog" if i < 11 else "the big brown dog", area=10) for i in range(14)]
    inter = [(3 * i) % 11 for i in range(14)]
    scores = {s.id: score(inter[i], 10) for i, s in enumerate(ss)}
    out = slice_metrics(scores, ss, DEFS, Conventions(), bootstrap_rounds=200)["expression_length"]
    # Direct: resample all 14 with numpy's default_rng(0) (one block of 200 x 14 draws); the slice's cIoU
    # on the drawn samples that fall in it; percentile interval.
    draws = np.random.default_rng(0).integers(0, 14, size=(200, 14))
    values = []
    for row in draws:
        kept = [k for k in row if k < 11]
        if kept:
            values.append(100 * sum(inter[k] for k in kept) / (10 * len(kept) + 1e-10))
    assert out["1-3 words"]["ciou_ci95"] == pytest.approx(list(np.percentile(values, [2.5, 97.5])))
    assert out["1-3 words"]["ciou"] == pytest.approx(100 * sum(inter[:11]) / 110)
    assert "ciou_ci95" not in out["4-6 words"] and out["4-6 words"]["n"] == 3
