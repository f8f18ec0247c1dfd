"""The upstream checkout (HARNESS_GLAMM_REPO) or a clean skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def glamm_repo() -> Path:
    raw = os.environ.get("HARNESS_GLAMM_REPO")
    if not raw:
        pytest.skip("HARNESS_GLAMM_REPO is not set (a checkout of mbzuai-oryx/groundingLMM)")
    repo = Path(raw)
    if not (repo / "model" / "GLaMM.py").is_file():
        pytest.skip(f"HARNESS_GLAMM_REPO={raw} is not a groundingLMM checkout")
    return repo
