"""Variants, options and the entry point, without any model."""

from __future__ import annotations

import pytest

from harness_glamm.adapter import GlammAdapter


def test_default_is_refseg_deterministic() -> None:
    a = GlammAdapter()
    assert a.settings["checkpoint"] == "MBZUAI/GLaMM-RefSeg" and a.settings["protocol"] == "deterministic"
    assert a.settings["question_template"].startswith("What is {class_name}") and "seed" not in a.settings


def test_glamm_protocol_variant_has_a_seed() -> None:
    a = GlammAdapter(arg="grand-glamm-protocol", seed=7)
    assert a.settings["checkpoint"] == "MBZUAI/GLaMM-GranD-Pretrained"
    assert a.settings["protocol"] == "glamm" and a.options["seed"] == 7 and "question_template" not in a.settings


def test_unknown_things_fail() -> None:
    with pytest.raises(ValueError, match="unknown GLaMM variant"):
        GlammAdapter(variant="fullscope")
    with pytest.raises(TypeError, match="unknown options"):
        GlammAdapter(temperature=0.1)


def test_registered_entry_point() -> None:
    from harness.registry import adapter_class

    assert adapter_class("glamm") is GlammAdapter
