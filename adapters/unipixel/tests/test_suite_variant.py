"""UniPixel's protocol (`--protocol unipixel`, harness/data/protocols.py) on ReasonSeg: every text a sample,
a failure scored as an empty mask, UniPixel's published rows; otherwise the `reasonseg` suite."""

from __future__ import annotations

from harness.data.suites import load_suite


def test_all_texts_protocol() -> None:
    variant, base = load_suite("reasonseg", "unipixel"), load_suite("reasonseg")
    assert variant.protocol == "unipixel" and variant.fingerprint != base.fingerprint
    assert base.conventions.sample_unit == "first_text" and variant.conventions.sample_unit == "sentence"
    assert variant.conventions.failure == "as_empty"
    assert {k: v for k, v in vars(variant.conventions).items() if k not in ("sample_unit", "failure")} == \
        {k: v for k, v in vars(base.conventions).items() if k not in ("sample_unit", "failure")}
    assert variant.source_params == base.source_params
    assert {(p.model, p.metric, p.value) for p in variant.published if p.model.startswith("UniPixel")} == {
        ("UniPixel-3B", "giou", 64.0), ("UniPixel-3B", "ciou", 56.2), ("UniPixel-7B", "giou", 60.5), ("UniPixel-7B", "ciou", 58.7)}
    refer = load_suite("refcoco", "unipixel").conventions
    assert (refer.failure, refer.gt_overlap, refer.sample_unit) == ("as_empty", "binarise", "sentence")


def test_refcoco_rows_are_the_protocols() -> None:
    assert not [p for p in load_suite("refcoco").published if p.model.startswith("UniPixel")]
    rows = {(p.model, p.split): p.value for p in load_suite("refcoco", "unipixel").published if p.model.startswith("UniPixel")}
    assert len(rows) == 16 and rows[("UniPixel-3B", "refcoco_val")] == 80.5 and rows[("UniPixel-7B", "refcocog_test")] == 77.1
