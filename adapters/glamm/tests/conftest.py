"""The upstream checkout (HARNESS_GLAMM_REPO) or a clean skip; every test that uses it is a
conformance test (``harness.modelkit.conformance``)."""

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

from harness_glamm.upstream import UPSTREAM

CONFORMANCE_FIXTURES = ("glamm_repo",)

# GLaMM's dataset code resizes with model/SAM/utils/transforms.py, which imports torchvision: PyPI's
# wheel is a CUDA build whose C operators do not load beside the CPU torch; import it without them
# (the mmcv stand-in then computes RoIAlign in pure torch, as it checks).
import_torchvision_on_cpu_torch()


@pytest.fixture(scope="session")
def glamm_repo() -> Path:
    return checkout_or_skip(UPSTREAM)
