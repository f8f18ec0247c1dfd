"""Finding and importing LISA's model code from a checkout (never copied into this repository).

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

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

UPSTREAM_ENV = "HARNESS_LISA_REPO"
UPSTREAM_REVISION = "3cb2d43"  # the dvlab-research/LISA commit the adapter was written against (UPSTREAM.md)
_MARKER = Path("model") / "LISA.py"
_TOP_LEVEL = ("model", "utils")


class UpstreamError(RuntimeError):
    """The LISA checkout is missing, wrong, or cannot be imported in this process."""


def resolve_upstream(path: str | os.PathLike[str] | None = None) -> Path:
    """The checkout named by the ``upstream_repo`` option, else by ``$HARNESS_LISA_REPO``."""
    raw = path if path else os.environ.get(UPSTREAM_ENV)
    if not raw:
        raise UpstreamError(
            f"LISA needs a checkout of dvlab-research/LISA (revision {UPSTREAM_REVISION}): set the adapter option "
            f"upstream_repo or the environment variable {UPSTREAM_ENV} to its path"
        )
    repo = Path(raw).expanduser().resolve()
    if not (repo / _MARKER).is_file():
        raise UpstreamError(f"{repo} is not a dvlab-research/LISA checkout: {_MARKER} is missing")
    return repo


def upstream_commit(repo: Path) -> str | None:
    """The checkout's commit when it is a git work tree (read without running git)."""
    head = repo / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (repo / ".git" / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


def _check_top_level(repo: Path) -> None:
    for name in _TOP_LEVEL:
        loaded = sys.modules.get(name)
        if loaded is None:
            continue
        paths = [Path(p).resolve() for p in getattr(loaded, "__path__", [])]
        file = getattr(loaded, "__file__", None)
        if file:
            paths.append(Path(file).resolve().parent)
        if (repo / name).resolve() not in paths:
            where = ", ".join(map(str, paths)) or repr(loaded)
            raise UpstreamError(
                f"another package named {name!r} is already imported in this process ({where}); "
                "LISA must run in its own worker process (harness env create lisa)"
            )


def import_module(repo: Path, name: str) -> ModuleType:
    """Import ``name`` (e.g. ``model.LISA``) from the checkout, putting it first on sys.path."""
    _check_top_level(repo)
    root = str(repo)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = ""
        if "torchvision" in str(exc):
            hint = " (LISA's model/segment_anything imports torchvision: install the torchvision that matches torch)"
        raise UpstreamError(f"cannot import {name} from {repo}: {exc}{hint}") from exc
