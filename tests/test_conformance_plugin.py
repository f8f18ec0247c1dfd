"""harness.modelkit.conformance and checkout_or_skip: a conformance test skips without its checkout, fails
instead under HARNESS_REQUIRE_UPSTREAM=1, is counted in the summary line .ci/adapters reads, and
HARNESS_TEST_ORDER=reverse reverses the run order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = '''
from pathlib import Path

import pytest
from harness.modelkit.conformance import (  # noqa: F401
    pytest_collection_modifyitems, pytest_configure, pytest_runtest_makereport, pytest_terminal_summary)
from harness.modelkit.testing import checkout_or_skip
from harness.modelkit.upstream import Upstream

UPSTREAM = Upstream(name="Toy", repository="someone/toy", env="HARNESS_TOY_REPO", revision="abc", marker="toy.py",
                    top_level=(), isolation="")
CONFORMANCE_FIXTURES = ("toy_repo",)


@pytest.fixture(scope="session")
def toy_repo() -> Path:
    return checkout_or_skip(UPSTREAM)
'''
TESTS = '''
def test_a_plain():
    print("ran a")


def test_b_conformance(toy_repo):
    print("ran b")
    assert (toy_repo / "toy.py").read_text() == "x"


def test_c_plain():
    print("ran c")
'''


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tests").mkdir(exist_ok=True)
    (tmp_path / "tests" / "conftest.py").write_text(CONFTEST)
    (tmp_path / "tests" / "test_toy.py").write_text(TESTS)
    clean = {k: v for k, v in os.environ.items() if k not in ("HARNESS_TOY_REPO", "HARNESS_REQUIRE_UPSTREAM", "HARNESS_TEST_ORDER")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests"], cwd=tmp_path,
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_without_checkout_it_skips_and_is_counted(tmp_path: Path) -> None:
    out = _run(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "conformance: 0 passed, 1 skipped, 0 failed (HARNESS_REQUIRE_UPSTREAM=0)" in out.stdout
    assert "2 passed, 1 skipped" in out.stdout


def test_required_checkout_missing_fails(tmp_path: Path) -> None:
    out = _run(tmp_path, HARNESS_REQUIRE_UPSTREAM="1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "conformance: 0 passed, 0 skipped, 1 failed (HARNESS_REQUIRE_UPSTREAM=1)" in out.stdout
    assert "HARNESS_TOY_REPO is not set" in out.stdout


def test_a_skip_inside_a_conformance_test_fails_when_required(tmp_path: Path) -> None:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.py").write_text("x")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_skip.py").write_text("import pytest\n\ndef test_d(toy_repo):\n    pytest.skip('no torch')\n")
    out = _run(tmp_path, HARNESS_TOY_REPO=str(tmp_path / "toy"), HARNESS_REQUIRE_UPSTREAM="1")
    assert out.returncode == 1 and "skipped while HARNESS_REQUIRE_UPSTREAM is set: Skipped: no torch" in out.stdout
    assert "conformance: 1 passed, 0 skipped, 1 failed" in out.stdout


def test_with_checkout_it_runs(tmp_path: Path) -> None:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.py").write_text("x")
    out = _run(tmp_path, HARNESS_TOY_REPO=str(tmp_path / "toy"), HARNESS_REQUIRE_UPSTREAM="1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "conformance: 1 passed, 0 skipped, 0 failed (HARNESS_REQUIRE_UPSTREAM=1)" in out.stdout


@pytest.mark.parametrize(("order", "expected"), [("", "ran a ran c"), ("reverse", "ran c ran a")])
def test_reverse_order(tmp_path: Path, order: str, expected: str) -> None:
    out = _run(tmp_path, HARNESS_TEST_ORDER=order)
    ran = " ".join(w for w in out.stdout.replace(".", " ").replace("s", " s ").split() if w in ("ran", "a", "c"))
    assert expected in ran, out.stdout
