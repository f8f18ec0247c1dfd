"""Shared fixtures: the upstream checkout (tests that need it skip cleanly without it) and tiny checkpoints."""

from __future__ import annotations

import os
import tempfile
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
from harness.modelkit.upstream import Upstream

# transformers copies a checkpoint's remote code here; keep it out of the user's cache
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="sa2va-hf-modules-"))

UPSTREAM = Upstream(
    name="Sa2VA", repository="bytedance/Sa2VA", env="HARNESS_SA2VA_REPO", revision="9832e1a",
    marker="projects/sa2va/hf/models_qwen2_5_vl/modeling_sa2va_qwen.py", top_level=("projects",),
    isolation="Sa2VA's evaluation package must run in its own process",
)


# Every test that uses the checkout is a conformance test: it may not skip under HARNESS_REQUIRE_UPSTREAM=1.
CONFORMANCE_FIXTURES = ("upstream_repo",)


def pytest_configure(config: pytest.Config) -> None:
    conformance.pytest_configure(config)
    import_torchvision_on_cpu_torch()  # the CPU torch of the tests: torchvision without its C operators


@pytest.fixture(scope="session")
def upstream_repo() -> Path:
    """The bytedance/Sa2VA checkout named by $HARNESS_SA2VA_REPO; skips the test when there is none."""
    return checkout_or_skip(UPSTREAM)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, upstream_repo: Path) -> Path:
    from tiny import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("ckpts") / "sa2va_tiny_qwen", upstream_repo)


@pytest.fixture(scope="session")
def tiny_checkpoint_qwen3(tmp_path_factory: pytest.TempPathFactory, upstream_repo: Path) -> Path:
    """The same for Sa2VA-Qwen3-VL (the checkout's ``projects/sa2va/hf/models_qwen3vl``)."""
    from tiny import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("ckpts") / "sa2va_tiny_qwen3vl", upstream_repo, variant="qwen3vl")


@pytest.fixture(scope="session")
def tiny_checkpoint_silent(tmp_path_factory: pytest.TempPathFactory, upstream_repo: Path) -> Path:
    from tiny import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("ckpts") / "sa2va_silent_qwen", upstream_repo, answers_seg=False)


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image[: height // 2, : width // 3] = (200, 30, 40)
    return image
