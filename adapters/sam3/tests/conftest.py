"""Test setup: a tiny SAM 3 saved once per session, and torchvision on a CPU-only torch.

torchvision's PyPI wheels are CUDA builds; with the CPU torch of the test environment
``import torchvision`` fails while registering fake kernels for its C operators. Sam3's image
processor needs only torchvision's pure-Python transforms, so when - and only when - that exact
failure happens, the real torchvision is imported with that one registration module skipped.
"""

from __future__ import annotations

import sys
import types

import pytest


def _import_torchvision() -> None:
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision  # noqa: F401


_import_torchvision()


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    from tiny import save_tiny_sam3

    return save_tiny_sam3(tmp_path_factory.mktemp("sam3"))
