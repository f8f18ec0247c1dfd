"""GLaMM's checkout (``harness.modelkit.upstream``; the model code is never copied into this repository).

GLaMM's code is not on PyPI. mbzuai-oryx/groundingLMM keeps it under the generic top-level
names ``model`` (``model/GLaMM.py``, ``model/llava``, ``model/SAM``, ``model/layers.py``),
``tools`` and a vendored ``mmdet``, and expects the checkout's root on ``PYTHONPATH``. So the
root goes first on ``sys.path`` only inside the process that loads the model (the adapter's
worker), only when ``load`` runs, after the mmcv stand-in is installed (``mmcv_shim``), and the
import refuses to go on when a ``model`` or ``tools`` package from elsewhere is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from harness.modelkit.upstream import Upstream, UpstreamError, upstream_commit

from harness_glamm import manifest, mmcv_shim

__all__ = ["MMCV_MODES", "UPSTREAM", "UpstreamError", "import_module", "resolve_upstream", "upstream_commit"]

UPSTREAM = Upstream(
    name="GLaMM",
    repository="mbzuai-oryx/groundingLMM",
    env="HARNESS_GLAMM_REPO",
    revision=manifest.UPSTREAM["revision"],  # the mbzuai-oryx/groundingLMM commit the adapter was written against (UPSTREAM.md)
    marker="model/GLaMM.py",
    top_level=("model", "tools"),
    isolation="GLaMM must run in its own worker process (harness env create glamm)",
)
MMCV_MODES = ("shim", "installed")


def resolve_upstream(path: str | os.PathLike[str] | None = None) -> Path:
    """The checkout named by the ``upstream_repo`` option, else by ``$HARNESS_GLAMM_REPO``."""
    return UPSTREAM.resolve(path)


def import_module(repo: Path, name: str, mmcv: str = "shim") -> ModuleType:
    """Import ``name`` (e.g. ``model.GLaMM``) from the checkout; ``mmcv="shim"`` installs the stand-in first."""
    if mmcv not in MMCV_MODES:
        raise ValueError(f"mmcv must be one of {', '.join(MMCV_MODES)}, got {mmcv!r}")
    return UPSTREAM.import_module(repo, name, prepare=mmcv_shim.install if mmcv == "shim" else None)
