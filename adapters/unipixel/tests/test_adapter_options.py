"""Options, names and the manifest: no model, no checkout."""

from __future__ import annotations

import pytest
from harness import registry

from harness_unipixel.adapter import UniPixel3B, UniPixel7B, UniPixelAdapter
from harness_unipixel.manifest import manifest


def test_entry_points_name_the_models() -> None:
    entries = registry.all_adapters()
    assert entries["unipixel-3b"].target == "harness_unipixel.adapter:UniPixel3B"
    assert entries["unipixel-7b"].target == "harness_unipixel.adapter:UniPixel7B"
    assert entries["unipixel"].target == "harness_unipixel.adapter:UniPixelAdapter"
    assert registry.adapter_class("unipixel-3b") is UniPixel3B


def test_default_checkpoints_and_fingerprint() -> None:
    assert UniPixel3B().settings["checkpoint"] == "PolyU-ChenLab/UniPixel-3B"
    assert UniPixel7B().settings["checkpoint"] == "PolyU-ChenLab/UniPixel-7B"
    a = UniPixel3B(upstream_repo="/somewhere", device="cuda:1")
    assert "upstream_repo" not in a.config()["options"] and "device" not in a.config()["options"]
    assert a.config()["options"]["failure"] == "record" and a.config()["options"]["max_new_tokens"] == 512
    assert UniPixel3B(failure="zero-mask").config() != a.config()  # the upstream variant is named in the fingerprint
    assert a.config()["options"]["share_vision"] is True and a.config()["options"]["share_sam2"] is True


def test_bad_options() -> None:
    with pytest.raises(TypeError, match="unknown options"):
        UniPixel3B(template="x")
    with pytest.raises(ValueError, match="failure rule"):
        UniPixel3B(failure="skip")
    with pytest.raises(ValueError, match="checkpoint"):
        UniPixelAdapter()
    with pytest.raises(ValueError, match="positive"):
        UniPixel3B(sample_frames=0)


def test_predict_before_load() -> None:
    import numpy as np
    from harness.types import Query

    with pytest.raises(RuntimeError, match="before load"):
        UniPixel3B().predict(np.zeros((4, 4, 3), np.uint8), [Query(id="a", image="x", expression="e", dataset="d", split="s")])


def test_manifest() -> None:
    m = manifest()
    assert m["upstream"]["revision"] == "5c8e941" and set(m["checkpoints"]) == {"PolyU-ChenLab/UniPixel-3B",
                                                                                 "PolyU-ChenLab/UniPixel-7B"}
