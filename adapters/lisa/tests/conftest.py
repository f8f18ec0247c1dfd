"""Shared fixtures: the upstream checkout (HARNESS_LISA_REPO) or a clean skip, and torchvision on a CPU torch.

LISA's ``model/segment_anything`` imports torchvision (``ResizeLongestSide`` resizes with
``torchvision.transforms.functional.resize``). PyPI's torchvision is a CUDA build whose C operators
do not load beside the CPU torch of the tests; ``import_torchvision_on_cpu_torch`` then imports the
real torchvision without them, so LISA's own resize runs as it does upstream.

Every test that uses ``lisa_repo`` is a conformance test (``harness.modelkit.conformance``).
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

from harness_lisa.upstream import UPSTREAM

CONFORMANCE_FIXTURES = ("lisa_repo",)

import_torchvision_on_cpu_torch()


@pytest.fixture(scope="session")
def lisa_repo() -> Path:
    return checkout_or_skip(UPSTREAM)
