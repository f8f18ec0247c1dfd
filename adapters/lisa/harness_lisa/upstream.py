"""LISA's checkout (``harness.modelkit.upstream``; the model code is never copied into this repository).

LISA's code is not on PyPI. Its model lives in dvlab-research/LISA under the generic
top-level names ``model`` (``model/LISA.py``, ``model/llava``, ``model/segment_anything``) and
``utils`` (``utils/utils.py``), which other checkouts (EVF-SAM, GLaMM) also use. So the
checkout's root goes first on ``sys.path`` only inside the process that loads the model (the
adapter's worker), only when ``load`` runs, and the import refuses to go on when a ``model``
or ``utils`` package from somewhere else is already imported.

``model/segment_anything/__init__.py`` imports torchvision (the automatic mask generator and
``ResizeLongestSide``), so the environment needs a torchvision that matches its torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from harness.modelkit.upstream import Upstream, UpstreamError, upstream_commit

from harness_lisa import manifest

__all__ = ["UPSTREAM", "UpstreamError", "import_module", "resolve_upstream", "upstream_commit"]

UPSTREAM = Upstream(
    name="LISA",
    repository="dvlab-research/LISA",
    env="HARNESS_LISA_REPO",
    revision=manifest.UPSTREAM["revision"],  # the dvlab-research/LISA commit the adapter was written against (UPSTREAM.md)
    marker="model/LISA.py",
    top_level=("model", "utils"),
    isolation="LISA must run in its own worker process (harness env create lisa)",
    import_hints=(("torchvision", " (LISA's model/segment_anything imports torchvision: install the torchvision that matches torch)"),),
)


def resolve_upstream(path: str | os.PathLike[str] | None = None) -> Path:
    """The checkout named by the ``upstream_repo`` option, else by ``$HARNESS_LISA_REPO``."""
    return UPSTREAM.resolve(path)


def import_module(repo: Path, name: str) -> ModuleType:
    """Import ``name`` (e.g. ``model.LISA``) from the checkout, putting it first on sys.path."""
    return UPSTREAM.import_module(repo, name)
