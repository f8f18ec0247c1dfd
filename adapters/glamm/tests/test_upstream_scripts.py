"""GLaMM's defaults are what ``eval/referring_seg/infer_and_evaluate.py`` runs (HARNESS_GLAMM_REPO), read
from the checkout (``run_evaluation.sh`` passes only the checkpoint, the split and the output path)."""

from __future__ import annotations

import inspect
import re

from harness.modelkit.llava_sam import SAM_SIZE
from harness.modelkit.testing import argparse_defaults

from harness_glamm import model
from harness_glamm.preprocess import CLIP_SIZE


def test_defaults_are_infer_and_evaluates(glamm_repo) -> None:
    script = glamm_repo / "eval" / "referring_seg" / "infer_and_evaluate.py"
    defaults = argparse_defaults(script)
    assert defaults["--vision-tower"] == model.DEFAULT_VISION_TOWER
    assert defaults["--vision-tower"].endswith(f"-{CLIP_SIZE}")
    assert defaults["--image_size"] == SAM_SIZE
    assert defaults["--conv_type"] == "llava_v1" and defaults["--use_mm_start_end"] is True
    assert defaults["--model_max_length"] == inspect.signature(model.load_glamm).parameters["model_max_length"].default
    assert defaults["--val_batch_size"] == 1  # one image per forward, as the adapter runs each image
    sh = (glamm_repo / "eval" / "referring_seg" / "run_evaluation.sh").read_text()
    runs = re.findall(r"infer_and_evaluate\.py (.*)", sh)
    assert runs and all(set(re.findall(r"--(\w+)", r)) <= {"version", "refer_seg_data", "results_path", "pretrained"}
                        for r in runs)
