"""Shared fixtures: the upstream checkout (tests that need it skip cleanly without it), tiny checkpoints, images.

Every test that uses ``evfsam_repo`` (directly or through a tiny checkpoint) is a conformance test: it
computes its expected values with upstream's own code and may not skip under HARNESS_REQUIRE_UPSTREAM=1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness.modelkit import conformance
from harness.modelkit.conformance import (  # noqa: F401  (pytest hooks: mark, police and count conformance tests)
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)
from harness.modelkit.testing import checkout_or_skip, import_torchvision_on_cpu_torch

from harness_evfsam.model import UPSTREAM

CONFORMANCE_FIXTURES = ("evfsam_repo",)


def pytest_configure(config: pytest.Config) -> None:
    conformance.pytest_configure(config)
    import_torchvision_on_cpu_torch()  # the CPU torch of the tests: torchvision without its C operators


@pytest.fixture(scope="session")
def evfsam_repo() -> Path:
    """The hustvl/EVF-SAM checkout named by $HARNESS_EVFSAM_REPO; skips the test when there is none."""
    return checkout_or_skip(UPSTREAM)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny import save_tokenizer

    return save_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_ori(tmp_path_factory: pytest.TempPathFactory, evfsam_repo: Path, tokenizer_dir: Path) -> Path:
    """A tiny random EvfSamModel (SAM-H head) saved as a checkpoint directory."""
    from tiny import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("evf_ori"), evfsam_repo, "ori", tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_sam2(tmp_path_factory: pytest.TempPathFactory, evfsam_repo: Path, tokenizer_dir: Path) -> Path:
    """A tiny random EvfSam2Model (SAM-2 head) saved as a checkpoint directory."""
    from tiny import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("evf_sam2"), evfsam_repo, "sam2", tokenizer_dir)


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Noise with a flat block and a gradient, so resizes and the model have structure to work on."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image[: height // 2, : width // 3] = (200, 30, 40)
    image[height // 2:, width // 2:, 1] = np.linspace(0, 255, width - width // 2, dtype=np.uint8)[None, :]
    return image
