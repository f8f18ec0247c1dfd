"""Variants, options and the entry point, without any model."""

from __future__ import annotations

import pytest

from harness_lisa.adapter import CHECKPOINTS, VARIANTS, LisaAdapter


def test_default_is_lisa_7b_teacher_forced() -> None:
    a = LisaAdapter()
    assert a.settings["checkpoint"] == "xinlai/LISA-7B-v1"
    assert a.settings["protocol"] == "teacher_forced"
    assert "upstream_repo" not in a.options


def test_named_variants() -> None:
    assert set(CHECKPOINTS.values()) == {"xinlai/LISA-7B-v1", "xinlai/LISA-7B-v1-explanatory",
                                         "xinlai/LISA-13B-llama2-v1", "xinlai/LISA-13B-llama2-v1-explanatory"}
    a = LisaAdapter(arg="13b-generate")
    assert a.settings["checkpoint"] == "xinlai/LISA-13B-llama2-v1" and a.settings["protocol"] == "generate"
    assert len(VARIANTS) == 8


def test_unknown_things_fail() -> None:
    with pytest.raises(ValueError, match="unknown LISA variant"):
        LisaAdapter(variant="70b")
    with pytest.raises(TypeError, match="unknown options"):
        LisaAdapter(temperature=0.7)
    with pytest.raises(ValueError, match="protocol"):
        LisaAdapter(protocol="beam")


def test_registered_entry_point() -> None:
    from harness.registry import adapter_class

    assert adapter_class("lisa") is LisaAdapter


def test_predict_before_load_fails() -> None:
    import numpy as np

    with pytest.raises(RuntimeError, match="before load"):
        LisaAdapter().predict(np.zeros((4, 4, 3), np.uint8), [object()])  # type: ignore[list-item]


def test_missing_checkout_is_named(monkeypatch) -> None:
    from harness_lisa.upstream import UpstreamError, resolve_upstream

    monkeypatch.delenv("HARNESS_LISA_REPO", raising=False)
    with pytest.raises(UpstreamError, match="HARNESS_LISA_REPO"):
        resolve_upstream(None)
