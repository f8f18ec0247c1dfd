"""Finding and importing a model's code from an upstream checkout (never copied into this repository).

Models such as LISA, GLaMM and LENS are not on PyPI and keep their code under generic top-level
names (``model``, ``utils``, ``tools``, ``src``) that other checkouts use too. An adapter
describes its checkout with an ``Upstream``; the checkout comes from the adapter option
``upstream_repo``, else from ``$HARNESS_<NAME>_REPO``, and must hold a marker file. Its root goes
first on ``sys.path`` only inside the process that loads the model (the adapter's worker), only
when the adapter imports from it, and the import refuses to go on when a package of one of those
top-level names from somewhere else is already imported.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


class UpstreamError(RuntimeError):
    """An upstream checkout is missing, wrong, or cannot be imported in this process."""


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


def _loaded_from(module: ModuleType) -> list[Path]:
    """The directories an already imported module or package was loaded from."""
    paths = [Path(p).resolve() for p in getattr(module, "__path__", [])]
    file = getattr(module, "__file__", None)
    if file and Path(file).resolve().parent not in paths:
        paths.append(Path(file).resolve().parent)
    return paths


@dataclass(frozen=True)
class Upstream:
    """One model's upstream checkout: where to find it, how to recognise it, what it imports as."""

    name: str  # the model as named in messages, e.g. "LISA"
    repository: str  # owner/name on GitHub, e.g. "dvlab-research/LISA"
    env: str  # the environment variable naming the checkout, e.g. "HARNESS_LISA_REPO"
    revision: str  # the commit the adapter was written against
    marker: str  # a file (relative, POSIX) that only such a checkout has, e.g. "model/LISA.py"
    top_level: tuple[str, ...]  # the checkout's top-level packages that must not come from elsewhere
    isolation: str  # the end of the "already imported" message, e.g. "LISA must run in its own worker process"
    import_hints: tuple[tuple[str, str], ...] = ()  # (text in an ImportError, hint appended to the message)

    def resolve(self, path: str | os.PathLike[str] | None = None) -> Path:
        """The checkout named by the ``upstream_repo`` option, else by ``$<env>``."""
        raw = path if path else os.environ.get(self.env)
        if not raw:
            raise UpstreamError(
                f"{self.name} needs a checkout of {self.repository} (revision {self.revision}): set the adapter option "
                f"upstream_repo or the environment variable {self.env} to its path"
            )
        repo = Path(raw).expanduser().resolve()
        marker = Path(*self.marker.split("/"))
        if not (repo / marker).is_file():
            raise UpstreamError(f"{repo} is not a {self.repository} checkout: {marker} is missing")
        return repo

    def check_top_level(self, repo: Path) -> None:
        """Refuse when a package of one of the checkout's top-level names is imported from elsewhere."""
        for name in self.top_level:
            loaded = sys.modules.get(name)
            if loaded is None:
                continue
            paths = _loaded_from(loaded)
            if (repo / name).resolve() not in paths:
                where = ", ".join(map(str, paths)) or repr(loaded)
                raise UpstreamError(
                    f"another package named {name!r} is already imported in this process ({where}); {self.isolation}"
                )

    def import_module(self, repo: Path, name: str, prepare: Callable[[Path], None] | None = None) -> ModuleType:
        """Import ``name`` (e.g. ``model.LISA``) from the checkout, putting it first on sys.path.

        ``prepare(repo)`` runs after the top-level check and before the import (e.g. to install
        a stand-in for a package the checkout needs)."""
        self.check_top_level(repo)
        if prepare is not None:
            prepare(repo)
        root = str(repo)
        if root not in sys.path:
            sys.path.insert(0, root)
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            hint = "".join(h for needle, h in self.import_hints if needle in str(exc))
            raise UpstreamError(f"cannot import {name} from {repo}: {exc}{hint}") from exc
