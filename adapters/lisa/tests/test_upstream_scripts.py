"""LISA's defaults are what its scripts run (HARNESS_LISA_REPO): ``train_ds.py`` (the validation the
teacher-forced protocol reproduces) and ``chat.py`` (the generate protocol), read from the checkout."""

from __future__ import annotations

from harness.modelkit.llava_sam import SAM_SIZE
from harness.modelkit.testing import argparse_defaults

from harness_lisa import model
from harness_lisa.adapter import MAX_NEW_TOKENS, LisaAdapter


def test_defaults_are_the_scripts(lisa_repo) -> None:
    import inspect
    import re

    train, chat = argparse_defaults(lisa_repo / "train_ds.py"), argparse_defaults(lisa_repo / "chat.py")
    for script in (train, chat):
        assert script["--vision-tower"] == model.DEFAULT_VISION_TOWER == LisaAdapter.DEFAULTS["vision_tower"]
        assert script["--image_size"] == SAM_SIZE
        assert script["--conv_type"] == "llava_v1"  # the template harness_lisa.prompts renders
        load = inspect.signature(model.load_lisa).parameters
        assert script["--model_max_length"] == load["model_max_length"].default
    assert train["--use_mm_start_end"] is True  # <image> -> <im_start><image><im_end>
    assert re.search(r"max_new_tokens=(\d+)", (lisa_repo / "chat.py").read_text()).group(1) == str(MAX_NEW_TOKENS)
