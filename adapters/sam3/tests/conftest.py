"""Test setup: a tiny SAM 3 saved once per session, and torchvision on a CPU-only torch.

torchvision's PyPI wheels are CUDA builds; with the CPU torch of the test environment
``import torchvision`` fails while registering fake kernels for its C operators. Sam3's image
processor needs only torchvision's pure-Python transforms, so when - and only when - that exact
failure happens, the real torchvision is imported with that one registration module skipped.
"""

from __future__ import annotations

import pytest
from harness.modelkit.testing import import_torchvision_on_cpu_torch

import_torchvision_on_cpu_torch()


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    from tiny import save_tiny_sam3

    return save_tiny_sam3(tmp_path_factory.mktemp("sam3"))
