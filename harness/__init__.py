"""harness: a neutral referee for text-prompted image segmentation models."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# The notebook API, imported on first use: `import harness` (and so `harness --help`) must not import
# numpy or pandas.
_LAZY = {"load_run": "harness.publish.api", "Run": "harness.publish.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
