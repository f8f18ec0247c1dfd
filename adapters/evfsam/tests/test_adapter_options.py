"""Options, model names, the checkout-era rule and what the adapter declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.errors import HarnessError
from harness.modelkit.testing import argparse_defaults
from harness.registry import adapter_class

from harness_evfsam import manifest
from harness_evfsam.adapter import EvfSam, EvfSam2, EvfSam2Multitask, EvfSamAdapter, EvfSamMultitask
from harness_evfsam.model import CheckoutMismatch, check_era, era_of


def fake_checkout(root: Path, multitask: bool) -> Path:
    """A folder with the files the checks look at (the marker of a checkout, and the era's file)."""
    (root / "model").mkdir(parents=True)
    (root / "model" / "evf_sam.py").write_text("")
    if multitask:
        (root / "utils").mkdir()
        (root / manifest.MULTITASK_MARKER).write_text("")
    return root


def test_model_names_are_registered_with_their_checkpoints() -> None:
    for name, cls in (("evf-sam", EvfSam), ("evf-sam2", EvfSam2), ("evf-sam-multitask", EvfSamMultitask),
                      ("evf-sam2-multitask", EvfSam2Multitask), ("evfsam", EvfSamAdapter)):
        assert adapter_class(name) is cls
    assert EvfSam().options == {"checkpoint": "YxZhang/evf-sam", "model_type": "ori"}
    assert EvfSam2().options == {"checkpoint": "YxZhang/evf-sam2", "model_type": "sam2"}
    assert EvfSam2Multitask().settings["model_type"] == "sam2" and EvfSamMultitask().settings["model_type"] == "ori"
    assert EvfSamAdapter.multi_image and EvfSamAdapter.prepares_images
    assert EvfSamAdapter.info.outputs == ("mask",)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="needs the option checkpoint"):
        EvfSamAdapter()
    with pytest.raises(ValueError, match="model_type"):
        EvfSamAdapter(checkpoint="some/dir")
    with pytest.raises(ValueError, match="model_type"):
        EvfSamAdapter(checkpoint="some/dir", model_type="effi")
    with pytest.raises(TypeError, match="unknown options"):
        EvfSam(precision="fp16")
    with pytest.raises(ValueError, match="dtype"):
        EvfSam(dtype="half")
    # where the checkout is and which device: not part of the fingerprint
    assert "upstream_repo" not in EvfSam(upstream_repo="/x", device="cuda:1").options


def test_sam2_checkpoints_are_tied_to_their_era(tmp_path: Path) -> None:
    original, multitask = fake_checkout(tmp_path / "a", False), fake_checkout(tmp_path / "b", True)
    assert era_of(original) == "original" and era_of(multitask) == "multitask"
    assert check_era("YxZhang/evf-sam2", original) == "original"
    assert check_era("YxZhang/evf-sam2-multitask", multitask) == "multitask"
    with pytest.raises(CheckoutMismatch, match="before 9d00853"):
        check_era("YxZhang/evf-sam2", multitask)
    with pytest.raises(CheckoutMismatch, match="at or after 9d00853"):
        check_era("YxZhang/evf-sam2-multitask", original)
    for checkpoint in ("YxZhang/evf-sam", "YxZhang/evf-sam-multitask", "/my/own/checkpoint"):  # either era
        check_era(checkpoint, original)
        check_era(checkpoint, multitask)


def test_check_names_the_mismatch_before_any_model_runs(tmp_path: Path) -> None:
    multitask = fake_checkout(tmp_path / "b", True)
    with pytest.raises(HarnessError, match=r"evf-sam2.*before 9d00853"):
        EvfSam2(upstream_repo=str(multitask)).check()
    with pytest.raises(HarnessError, match="is not a directory"):
        EvfSamAdapter(checkpoint=str(tmp_path / "missing"), model_type="ori", upstream_repo=str(multitask)).check()
    with pytest.raises(HarnessError, match=r"model/evf_sam\.py is missing"):
        EvfSam(upstream_repo=str(tmp_path)).check()
    EvfSam2Multitask(upstream_repo=str(multitask)).check()


def test_checkpoints_are_the_ones_upstreams_readme_publishes(evfsam_repo: Path) -> None:
    readme = (evfsam_repo / "README.md").read_text(encoding="utf-8")
    for known in manifest.MODELS.values():
        assert f"https://huggingface.co/{known.hub_id}\"" in readme
    assert manifest.MULTITASK_COMMIT in readme


def test_defaults_are_eval_pys(evfsam_repo: Path) -> None:
    """eval.py: fp16 (the adapter's default on CUDA), BEiT-3 at 224; the model types it knows."""
    from harness_evfsam import preprocess

    defaults = argparse_defaults(evfsam_repo / "eval.py")
    assert defaults["--precision"] == "fp16" and defaults["--image_size"] == preprocess.BEIT_SIZE
    assert defaults["--model_type"] == "ori"
    assert set(manifest.MODEL_TYPES) < {"ori", "effi", "sam2"}


def test_the_fingerprint_names_the_sam_input_of_the_checkouts_era(tmp_path: Path) -> None:
    original, multitask = fake_checkout(tmp_path / "a", False), fake_checkout(tmp_path / "b", True)
    assert EvfSam2(upstream_repo=str(original)).config()["sam_input"] == "longest-side-interpolate"
    assert EvfSam2Multitask(upstream_repo=str(multitask)).config()["sam_input"] == "squash"
    assert EvfSam(upstream_repo=str(original)).config()["sam_input"] == "longest-side-pad"
    assert "sam_input" not in EvfSam2(upstream_repo=str(tmp_path / "nowhere")).config()
