"""Shared fixtures: the upstream checkout (tests that need it skip cleanly without it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.modelkit.testing import checkout_or_skip

from harness_lens.model import UPSTREAM


@pytest.fixture(scope="session")
def upstream_repo() -> Path:
    """The hustvl/LENS checkout named by $HARNESS_LENS_REPO; skips the test when there is none."""
    return checkout_or_skip(UPSTREAM)
