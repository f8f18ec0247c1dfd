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
from harness.modelkit.testing import checkout_or_skip

from harness_glamm.upstream import UPSTREAM

CONFORMANCE_FIXTURES = ("glamm_repo",)


@pytest.fixture(scope="session")
def glamm_repo() -> Path:
    return checkout_or_skip(UPSTREAM)
