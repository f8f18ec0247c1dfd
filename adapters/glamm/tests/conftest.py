"""The upstream checkout (HARNESS_GLAMM_REPO) or a clean skip."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.modelkit.testing import checkout_or_skip

from harness_glamm.upstream import UPSTREAM


@pytest.fixture(scope="session")
def glamm_repo() -> Path:
    return checkout_or_skip(UPSTREAM)
