"""Shared fixtures: the upstream checkout (tests that need it skip cleanly without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def upstream_repo() -> Path:
    """The hustvl/LENS checkout named by $HARNESS_LENS_REPO; skips the test when there is none."""
    raw = os.environ.get("HARNESS_LENS_REPO")
    if not raw:
        pytest.skip("HARNESS_LENS_REPO is not set: no hustvl/LENS checkout to build the upstream model from")
    repo = Path(raw)
    if not (repo / "src" / "open_r1" / "trainer" / "samr1.py").is_file():
        pytest.skip(f"HARNESS_LENS_REPO={raw} is not a hustvl/LENS checkout")
    return repo
