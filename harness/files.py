"""Atomic file writes: the one way every stage writes a file that others may read at any moment."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def naming(exc: OSError, path: Path | str) -> OSError:
    """``exc`` with the file it is about: a write that fails (disk full, read-only file system) raises
    an OSError without a file name, which the command line turns into ``error: PATH: reason (errno NAME)``."""
    if exc.filename is not None and str(exc.filename) == str(path):
        return exc
    named = type(exc)(exc.errno, exc.strerror or str(exc), str(path))
    named.__cause__ = exc
    return named


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so readers never see half a file."""
    write_lines_atomic(path, [text])


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``write_text_atomic`` for bytes (a figure)."""
    _write_atomic(path, [data], "wb")


def write_lines_atomic(path: Path, lines: Iterable[str]) -> None:
    """``write_text_atomic`` for text made piece by piece (a rewritten log never sits in memory whole).
    If producing the pieces raises, the file is left as it was."""
    _write_atomic(path, lines, "w")


def _write_atomic(path: Path, pieces: Iterable[Any], mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # a read-only or full directory: named by the file meant, not the temporary one
        raise naming(exc, path) from exc
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            fh.writelines(pieces)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be shared or served
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)  # the file is left as it was
        if isinstance(exc, OSError) and exc.filename is None:
            raise naming(exc, path) from exc
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
