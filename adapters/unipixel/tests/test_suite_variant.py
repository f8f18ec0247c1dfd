"""The ReasonSeg all-texts suite variant shipped with the adapter: it parses, and differs from `reasonseg` only
in the sample unit (every text), its name and its published rows."""

from __future__ import annotations

from pathlib import Path

from harness.data.suites import load_suite

VARIANT = Path(__file__).resolve().parents[1] / "suites" / "reasonseg-unipixel-all-texts.yaml"


def test_all_texts_variant() -> None:
    variant, base = load_suite(str(VARIANT)), load_suite("reasonseg")
    assert variant.name == "reasonseg-unipixel-all-texts" != base.name
    assert base.conventions.sample_unit == "first_text" and variant.conventions.sample_unit == "sentence"
    assert {k: v for k, v in vars(variant.conventions).items() if k != "sample_unit"} == \
        {k: v for k, v in vars(base.conventions).items() if k != "sample_unit"}
    assert variant.source_params == {**base.source_params, "splits": {k: base.source_params["splits"][k] for k in ("val", "test")}}
    assert {(p.model, p.metric, p.value) for p in variant.published} == {
        ("UniPixel-3B", "giou", 64.0), ("UniPixel-3B", "ciou", 56.2), ("UniPixel-7B", "giou", 60.5), ("UniPixel-7B", "ciou", 58.7)}
