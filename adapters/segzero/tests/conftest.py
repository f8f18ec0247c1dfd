"""Test setup: tiny checkpoints saved once per session, and torchvision on a CPU-only torch.

torchvision's PyPI wheels are CUDA builds; with the CPU torch of the test environment their C
extension cannot load, and ``import torchvision`` fails while registering fake kernels for its
C operators (``operator torchvision::nms does not exist``). SAM2ImagePredictor only needs
torchvision's pure-Python transforms (Resize, Normalize, ToTensor), so when - and only when -
that exact failure happens, the real torchvision is imported with that one registration module
skipped. torchvision's C operators (nms, roi_align) stay unavailable; nothing here uses them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.modelkit.conformance import (  # noqa: F401  (pytest hooks: mark, police and count conformance tests)
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)
from harness.modelkit.testing import checkout_or_skip, import_torchvision_on_cpu_torch
from harness.modelkit.upstream import Upstream

import_torchvision_on_cpu_torch()

# The upstream checkout the conformance tests read and import from (scripts, prompts, post-processing);
# the adapter itself never imports it. CI points the variable at ../shared/upstream (dvlab-research/Seg-Zero).
UPSTREAM = Upstream(name="Seg-Zero", repository="dvlab-research/Seg-Zero", env="HARNESS_SEGZERO_REPO", revision="42a3345",
                    marker="evaluation_scripts/evaluation.py", top_level=(), isolation="")
CONFORMANCE_FIXTURES = ("segzero_repo",)


@pytest.fixture(scope="session")
def segzero_repo() -> Path:
    return checkout_or_skip(UPSTREAM)


@pytest.fixture(scope="session")
def tiny_options(tmp_path_factory):
    from tiny import save_tiny_checkpoints

    return save_tiny_checkpoints(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_processor():
    from tiny import build_processor

    return build_processor()
