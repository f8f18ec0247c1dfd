"""Test setup: tiny checkpoints saved once per session, and torchvision on a CPU-only torch.

torchvision's PyPI wheels are CUDA builds; with the CPU torch of the test environment their C
extension cannot load, and ``import torchvision`` fails while registering fake kernels for its
C operators (``operator torchvision::nms does not exist``). SAM2ImagePredictor only needs
torchvision's pure-Python transforms (Resize, Normalize, ToTensor), so when - and only when -
that exact failure happens, the real torchvision is imported with that one registration module
skipped. torchvision's C operators (nms, roi_align) stay unavailable; nothing here uses them.
"""

from __future__ import annotations

import pytest
from harness.modelkit.testing import import_torchvision_on_cpu_torch

import_torchvision_on_cpu_torch()


@pytest.fixture(scope="session")
def tiny_options(tmp_path_factory):
    from tiny import save_tiny_checkpoints

    return save_tiny_checkpoints(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_processor():
    from tiny import build_processor

    return build_processor()
