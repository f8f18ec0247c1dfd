"""Shared fixtures: the upstream checkout (HARNESS_LISA_REPO) or a clean skip.

LISA's ``model/segment_anything/__init__.py`` imports torchvision (its automatic mask
generator and ``ResizeLongestSide``), none of which the evaluation path calls. A CPU-only
torch cannot load a PyPI torchvision's operators, so when torchvision does not import, the
tests put a stand-in for exactly the names LISA imports into ``sys.modules``; each raises if
called. The adapter itself never does this: its environment installs the real torchvision.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest
from harness.modelkit.testing import checkout_or_skip

from harness_lisa.upstream import UPSTREAM


def _torchvision_stand_in() -> None:
    try:
        import torchvision  # noqa: F401
        return
    except Exception:  # missing, or a build that does not match the CPU torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision stand-in of the tests: not available")

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    boxes.batched_nms = boxes.box_area = unavailable
    functional.resize = functional.to_pil_image = unavailable
    tv.ops, ops.boxes, tv.transforms, transforms.functional = ops, boxes, transforms, functional
    tv.__path__ = []  # a package, so that submodule imports resolve through sys.modules
    ops.__path__ = []
    transforms.__path__ = []
    for module in (tv, ops, boxes, transforms, functional):
        module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops, "torchvision.ops.boxes": boxes,
                        "torchvision.transforms": transforms, "torchvision.transforms.functional": functional})


@pytest.fixture(scope="session")
def lisa_repo() -> Path:
    repo = checkout_or_skip(UPSTREAM)
    _torchvision_stand_in()
    return repo
