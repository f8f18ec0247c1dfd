"""Test setup: a tiny SAM 3 saved once per session, and torchvision on a CPU-only torch.

torchvision's PyPI wheels are CUDA builds; with the CPU torch of the test environment
``import torchvision`` fails while registering fake kernels for its C operators. Sam3's image
processor needs only torchvision's pure-Python transforms, so when - and only when - that exact
failure happens, the real torchvision is imported with that one registration module skipped.
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
# the adapter itself never imports it. CI points the variable at ../shared/upstream (facebookresearch/sam3).
UPSTREAM = Upstream(name="SAM 3", repository="facebookresearch/sam3", env="HARNESS_SAM3_REPO", revision="99d02f2",
                    marker="sam3/model/sam3_image_processor.py", top_level=(), isolation="")
CONFORMANCE_FIXTURES = ("sam3_repo",)


@pytest.fixture(scope="session")
def sam3_repo() -> Path:
    return checkout_or_skip(UPSTREAM)


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    from tiny import save_tiny_sam3

    return save_tiny_sam3(tmp_path_factory.mktemp("sam3"))


@pytest.fixture(scope="session")
def confident_path(tmp_path_factory):
    """The tiny SAM 3 with its scores spread and its masks sharp (tiny.make_confident): the agent's SAM 3."""
    from tiny import save_tiny_sam3

    return save_tiny_sam3(tmp_path_factory.mktemp("sam3-confident"), confident=True)
