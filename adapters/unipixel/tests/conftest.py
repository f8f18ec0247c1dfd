"""Shared fixtures: the upstream checkout (tests that need it skip cleanly without it) and tiny checkpoints."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from harness.modelkit import conformance
from harness.modelkit.conformance import (  # noqa: F401  (pytest hooks: mark, police and count conformance tests)
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)
from harness.modelkit.testing import checkout_or_skip, import_torchvision_on_cpu_torch

from harness_unipixel.model import UPSTREAM, import_upstream

# Every test that uses the checkout is a conformance test: it may not skip under HARNESS_REQUIRE_UPSTREAM=1.
CONFORMANCE_FIXTURES = ("upstream_repo",)


def pytest_configure(config: pytest.Config) -> None:
    conformance.pytest_configure(config)
    import_torchvision_on_cpu_torch()  # the CPU torch of the tests: torchvision without its C operators


@pytest.fixture(scope="session")
def upstream_repo() -> Path:
    """The PolyU-ChenLab/UniPixel checkout named by $HARNESS_UNIPIXEL_REPO; skips the test when there is none."""
    return checkout_or_skip(UPSTREAM)


@pytest.fixture(scope="session")
def qwen2_5_vl(upstream_repo: Path) -> ModuleType:
    return import_upstream(upstream_repo, "unipixel.model.qwen2_5_vl")


@pytest.fixture(scope="session")
def infer_seg(upstream_repo: Path, qwen2_5_vl: ModuleType) -> ModuleType:
    """Upstream's ``unipixel/eval/infer_seg.py`` as a module (its ``EvalDataset`` reads the global ``processor``)."""
    return import_upstream(upstream_repo, "unipixel.eval.infer_seg")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, qwen2_5_vl: ModuleType) -> Path:
    from tiny import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("unipixel-tiny"), qwen2_5_vl)


@pytest.fixture(scope="session")
def tiny_checkpoint_no_seg(tmp_path_factory: pytest.TempPathFactory, qwen2_5_vl: ModuleType) -> Path:
    """A tiny checkpoint that never draws a mask and answers "no"."""
    from tiny import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("unipixel-noseg"), qwen2_5_vl, draws_masks=False, script=["no"])


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image[: height // 2, : width // 3] = (200, 30, 40)  # a flat region, so resizes see edges too
    return image


def save_png(image: np.ndarray, directory: Path, name: str) -> Path:
    from PIL import Image

    path = directory / f"{name}.png"
    Image.fromarray(image).save(path)
    return path
