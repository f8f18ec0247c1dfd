"""Shared fixtures: torchvision on a CPU torch, the upstream checkout (tests that need it skip cleanly without it, and fail
instead under HARNESS_REQUIRE_UPSTREAM=1); every test that uses it is a conformance test."""

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

from harness_lens.model import UPSTREAM

CONFORMANCE_FIXTURES = ("upstream_repo",)

# eval/evaluate_res2.py (the oracle of the conformance tests) resizes with torchvision; PyPI's wheel is a
# CUDA build whose C operators do not load beside the CPU torch: import it without them.
import_torchvision_on_cpu_torch()


@pytest.fixture(scope="session")
def upstream_repo() -> Path:
    """The hustvl/LENS checkout named by $HARNESS_LENS_REPO; skips the test when there is none."""
    return checkout_or_skip(UPSTREAM)
