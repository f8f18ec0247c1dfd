"""Shared fixtures: the upstream checkout (tests that need it skip cleanly without it, and fail
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
from harness.modelkit.testing import checkout_or_skip

from harness_lens.model import UPSTREAM

CONFORMANCE_FIXTURES = ("upstream_repo",)


@pytest.fixture(scope="session")
def upstream_repo() -> Path:
    """The hustvl/LENS checkout named by $HARNESS_LENS_REPO; skips the test when there is none."""
    return checkout_or_skip(UPSTREAM)
