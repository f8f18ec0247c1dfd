"""The SAM-2 input of the original checkpoints against a checkout from before 9d00853 (e.g. 781bee0).

The reference snapshot is of the multitask era, so this needs a second checkout, named by
``$HARNESS_EVFSAM_ORIGINAL_REPO``; without it the test skips (it is not a conformance test of the
reference snapshot). Its ``ValDataset`` runs in a child process: the two checkouts' ``model`` and
``utils`` packages cannot share one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_image
from upstream_eval import write_refcoco

from harness_evfsam import manifest, preprocess
from harness_evfsam.model import era_of

CHILD = """
import sys, torch
from harness.modelkit.testing import import_torchvision_on_cpu_torch
import_torchvision_on_cpu_torch()
sys.path.insert(0, sys.argv[1])
from utils.dataset import ValDataset
dataset = ValDataset(sys.argv[2], None, "refcoco|unc|val", 224, model_type="sam2")
_, sam, beit, _, _, resize, _, _ = dataset[0]
torch.save({"sam": sam, "beit": beit, "resize": tuple(resize)}, sys.argv[3])
"""


def test_original_sam2_input_is_the_original_val_datasets(tmp_path: Path) -> None:
    raw = os.environ.get("HARNESS_EVFSAM_ORIGINAL_REPO")
    if not raw or not (Path(raw) / "model" / "evf_sam2.py").is_file():
        pytest.skip("HARNESS_EVFSAM_ORIGINAL_REPO does not name a hustvl/EVF-SAM checkout from before 9d00853")
    repo = Path(raw)
    assert era_of(repo) == "original", f"{repo} has {manifest.MULTITASK_MARKER}: it is from 9d00853 on"
    image = make_image(90, 130, seed=7)
    root = write_refcoco(tmp_path / "data", [image], [[["a red car"]]])
    subprocess.run([sys.executable, "-c", CHILD, str(repo), str(root), str(tmp_path / "out.pt")], check=True,
                   cwd=tmp_path, capture_output=True)
    expected = torch.load(tmp_path / "out.pt")
    ours = preprocess.prepare(image, preprocess.sam_input_for("sam2", era_of(repo)))
    assert ours.resize == expected["resize"]
    assert torch.equal(ours.sam, expected["sam"])
