"""The RefCOCO/+ "test" (testA ∪ testB) suite variant shipped with the adapter: it parses, reads REFER's
"test" as testA and testB together, and otherwise is the `refcoco` suite."""

from __future__ import annotations

from pathlib import Path

from harness.data.sources.refer import refer_split_match
from harness.data.suites import load_suite

VARIANT = Path(__file__).resolve().parents[1] / "suites" / "refcoco-sa2va-test.yaml"


def test_test_split_variant() -> None:
    variant, base = load_suite(str(VARIANT)), load_suite("refcoco")
    assert variant.name == "refcoco-sa2va-test" != base.name
    assert variant.conventions == base.conventions
    assert {k: v for k, v in variant.source_params.items() if k != "splits"} == \
        {k: v for k, v in base.source_params.items() if k != "splits"}
    splits = variant.source_params["splits"]
    assert {k: s["split"] for k, s in splits.items()} == {"refcoco_test": "test", "refcoco+_test": "test", "refcocog_test": "test"}
    assert refer_split_match("testA", "test") and refer_split_match("testB", "test") and not refer_split_match("val", "test")
    for name, ds in (("refcoco_test", "refcoco"), ("refcoco+_test", "refcoco+")):  # counts: testA + testB
        for key in ("images", "objects", "expressions"):
            assert variant.splits[name]["counts"][key] == sum(base.splits[f"{ds}_{s}"]["counts"][key] for s in ("testA", "testB"))
    assert variant.splits["refcocog_test"]["counts"] == base.splits["refcocog_test"]["counts"]
    rows = {(p.model, p.split): p.value for p in variant.published}
    assert rows[("Sa2VA-Qwen2.5-VL-3B", "refcoco_test")] == 79.6 and len(rows) == 12
    assert all("unconfirmed" in p.source for p in variant.published)
