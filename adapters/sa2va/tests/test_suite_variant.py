"""Sa2VA's runner protocol (`--protocol sa2va-runner`, harness/data/protocols.py): RefCOCO/+ "test" read as
testA and testB together, RefCOCOg umd test, otherwise the `refcoco` suite, with the model cards' rows."""

from __future__ import annotations

from harness.data.sources.refer import refer_split_match
from harness.data.suites import load_suite


def test_test_split_protocol() -> None:
    variant, base = load_suite("refcoco", "sa2va-runner"), load_suite("refcoco")
    assert variant.protocol == "sa2va-runner" and variant.summary()["protocol"] == "sa2va-runner"
    assert variant.fingerprint != base.fingerprint
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
    rows = {(p.model, p.split): p for p in variant.published if p.model.startswith("Sa2VA-") and p.split.endswith("_test")}
    assert rows[("Sa2VA-Qwen2.5-VL-3B", "refcoco_test")].value == 79.6 and len(rows) == 12
    assert all("unconfirmed" in p.source for p in rows.values())
