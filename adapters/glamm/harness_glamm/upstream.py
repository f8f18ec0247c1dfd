"""Finding and importing GLaMM's model code from a checkout (never copied into this repository).

GLaMM's code is not on PyPI. mbzuai-oryx/groundingLMM keeps it under the generic top-level
names ``model`` (``model/GLaMM.py``, ``model/llava``, ``model/SAM``, ``model/layers.py``),
``tools`` and a vendored ``mmdet``, and expects the checkout's root on ``PYTHONPATH``. So the
root goes first on ``sys.path`` only inside the process that loads the model (the adapter's
worker), only when ``load`` runs, after the mmcv stand-in is installed (``mmcv_shim``), and the
import refuses to go on when a ``model`` or ``tools`` package from elsewhere is loaded.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from harness_glamm import mmcv_shim

UPSTREAM_ENV = "HARNESS_GLAMM_REPO"
UPSTREAM_REVISION = "e74865f"  # the mbzuai-oryx/groundingLMM commit the adapter was written against (UPSTREAM.md)
_MARKER = Path("model") / "GLaMM.py"
_TOP_LEVEL = ("model", "tools")
MMCV_MODES = ("shim", "installed")


class UpstreamError(RuntimeError):
    """The GLaMM checkout is missing, wrong, or cannot be imported in this process."""


def resolve_upstream(path: str | os.PathLike[str] | None = None) -> Path:
    """The checkout named by the ``upstream_repo`` option, else by ``$HARNESS_GLAMM_REPO``."""
    raw = path if path else os.environ.get(UPSTREAM_ENV)
    if not raw:
        raise UpstreamError(
            f"GLaMM needs a checkout of mbzuai-oryx/groundingLMM (revision {UPSTREAM_REVISION}): set the adapter option "
            f"upstream_repo or the environment variable {UPSTREAM_ENV} to its path"
        )
    repo = Path(raw).expanduser().resolve()
    if not (repo / _MARKER).is_file():
        raise UpstreamError(f"{repo} is not a mbzuai-oryx/groundingLMM checkout: {_MARKER} is missing")
    return repo


def upstream_commit(repo: Path) -> str | None:
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
                "GLaMM must run in its own worker process (harness env create glamm)"
            )


def import_module(repo: Path, name: str, mmcv: str = "shim") -> ModuleType:
    """Import ``name`` (e.g. ``model.GLaMM``) from the checkout; ``mmcv="shim"`` installs the stand-in first."""
    if mmcv not in MMCV_MODES:
        raise ValueError(f"mmcv must be one of {', '.join(MMCV_MODES)}, got {mmcv!r}")
    _check_top_level(repo)
    if mmcv == "shim":
        mmcv_shim.install(repo)
    root = str(repo)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise UpstreamError(f"cannot import {name} from {repo}: {exc}") from exc
