"""Options, names and the manifest: no model, no checkout."""

from __future__ import annotations

import numpy as np
import pytest
from harness import registry
from harness.types import Query

from harness_sa2va.adapter import Sa2VAAdapter
from harness_sa2va.manifest import MODELS, manifest


def test_entry_points_name_the_models() -> None:
    entries = registry.all_adapters()
    for name, checkpoint in MODELS.items():
        cls = registry.adapter_class(name)
        assert issubclass(cls, Sa2VAAdapter) and cls.DEFAULT_CHECKPOINT == checkpoint and cls.info.name == name
        assert entries[name].origin == "harness-sa2va"
    assert registry.adapter_class("sa2va") is Sa2VAAdapter


def test_options() -> None:
    a = registry.create_adapter("sa2va-qwen2.5vl-3b")
    assert a.settings["checkpoint"] == "ByteDance/Sa2VA-Qwen2_5-VL-3B" and a.settings["answer_rule"] == "sa2va-v2"
    assert Sa2VAAdapter(model_path="/x/Sa2VA-Qwen3-VL-4B").settings["checkpoint"] == "/x/Sa2VA-Qwen3-VL-4B"
    v1 = registry.create_adapter("sa2va-qwen2.5vl-3b", {"answer_rule": "sa2va-v1-skip"})
    assert v1.config() != a.config() and v1.config()["options"]["answer_rule"] == "sa2va-v1-skip"
    assert "device" not in registry.create_adapter("sa2va-internvl3-8b", {"device": "cuda:3"}).config()["options"]
    with pytest.raises(ValueError, match="answer_rule"):
        Sa2VAAdapter(checkpoint="x", answer_rule="skip")
    with pytest.raises(ValueError, match="needs the option checkpoint"):
        Sa2VAAdapter()
    with pytest.raises(TypeError, match="unknown options"):
        Sa2VAAdapter(checkpoint="x", template="y")
    with pytest.raises(ValueError, match="not both"):
        Sa2VAAdapter(checkpoint="x", model_path="y")
    with pytest.raises(ValueError, match="prompt"):
        Sa2VAAdapter(checkpoint="x", prompt="cot")


def test_processor_rule() -> None:
    from harness_sa2va.model import wants_processor

    assert wants_processor("ByteDance/Sa2VA-Qwen2_5-VL-3B") and wants_processor("ByteDance/Sa2VA-Qwen3-VL-4B")
    assert not wants_processor("ByteDance/Sa2VA-InternVL3-8B")
    assert wants_processor("ByteDance/Sa2VA-InternVL3-8B", use_processor=True)


def test_inputs_and_predict_before_load() -> None:
    a = registry.create_adapter("sa2va-qwen2.5vl-3b")
    q = Query(id="a", image="x", expression="The red car.", dataset="d", split="s")
    assert a.inputs(np.zeros((4, 4, 3), np.uint8), q)["question"] == "<image>\n Please segment The red car. in this image."
    with pytest.raises(RuntimeError, match="before load"):
        a.predict(np.zeros((4, 4, 3), np.uint8), [q])


def test_manifest() -> None:
    assert manifest()["upstream"]["revision"] == "9832e1a" and "sa2va-qwen3vl-4b" in manifest()["models"]
