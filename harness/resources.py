"""Where the suites (suites/) and report templates (reports/) live.

In a wheel they travel inside the package as ``harness/_suites`` and ``harness/_reports``
(pyproject force-include); in a source checkout or editable install they are the top-level
``suites/`` and ``reports/`` folders beside ``harness/``. (``benchmarks/`` holds performance
scripts only and is not shipped.)
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The directory of ``suites`` or ``reports``, wheel or checkout."""
    for candidate in (_PACKAGE / f"_{name}", _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the harness's {name}/ folder is missing (looked in {_PACKAGE / ('_' + name)} and {_PACKAGE.parent / name})")
