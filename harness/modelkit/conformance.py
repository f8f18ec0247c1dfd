"""pytest hooks for an adapter's conformance tests (the tests that check it against upstream's own code).

An adapter's ``tests/conftest.py`` imports these hooks and names its checkout fixtures::

    from harness.modelkit.conformance import pytest_configure, pytest_runtest_makereport, pytest_terminal_summary
    CONFORMANCE_FIXTURES = ("lisa_repo",)

- every collected test that uses one of ``CONFORMANCE_FIXTURES`` (directly or through another
  fixture) is marked ``conformance``; a test may also carry ``@pytest.mark.conformance`` itself;
- while ``$HARNESS_REQUIRE_UPSTREAM`` is set (``.ci/adapters`` sets it where the checkout is
  present), a conformance test that skips, whatever the reason, is reported as failed;
- the terminal summary ends with one line ``conformance: N passed, N skipped, N failed`` that
  ``.ci/adapters`` prints per adapter;
- ``$HARNESS_TEST_ORDER=reverse`` runs the collected tests in reverse order (``.ci/adapters`` runs
  each adapter's tests both ways, so that no test passes only on what an earlier one left behind).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from harness.modelkit.testing import REQUIRE_ENV, upstream_required

MARKER = "conformance"
ORDER_ENV = "HARNESS_TEST_ORDER"


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", f"{MARKER}: checks the adapter against upstream's own code (a checkout)")


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    fixtures: set[str] = set()
    for plugin in config.pluginmanager.get_plugins():
        fixtures.update(getattr(plugin, "CONFORMANCE_FIXTURES", ()) or ())
    for item in items:
        if fixtures & set(getattr(item, "fixturenames", ())):
            item.add_marker(MARKER)
    order = os.environ.get(ORDER_ENV, "").strip().lower()
    if order == "reverse":
        items.reverse()
    elif order not in ("", "forward"):
        raise pytest.UsageError(f"{ORDER_ENV} must be 'forward' or 'reverse', got {order!r}")


def _is_conformance(item: Any) -> bool:
    return item.get_closest_marker(MARKER) is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if not _is_conformance(item):
        return
    report.conformance = True
    if report.skipped and upstream_required() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"conformance test skipped while {REQUIRE_ENV} is set: {reason}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    results: dict[str, str] = {}
    for category in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(category, []):
            if not getattr(report, "conformance", False):
                continue
            result = {"error": "failed"}.get(category, category)
            if results.get(report.nodeid) in (None, "passed"):  # a failed setup or teardown outranks a pass
                results[report.nodeid] = result
    counts = {name: sum(1 for r in results.values() if r == name) for name in ("passed", "skipped", "failed")}
    terminalreporter.write_line(
        f"conformance: {counts['passed']} passed, {counts['skipped']} skipped, {counts['failed']} failed "
        f"({REQUIRE_ENV}={'1' if upstream_required() else '0'})")
