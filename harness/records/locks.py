"""Advisory file locks (fcntl.flock) that keep two writers out of one run directory.

- ``writer_lock``: a whole-run writer holds it exclusively; sharded ranks hold it shared, so
  ranks of one sharded run coexist but a plain run cannot write beside them (or beside
  another plain run).
- ``shard_lock``: exclusive per (model, split, shard): two processes claiming the same shard
  are refused.
- ``manifest_lock``: held briefly around every read-modify-write of the manifest.

The kernel drops a flock when its process dies, so a ``kill -9`` never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from harness.errors import HarnessError


class LockedError(HarnessError):
    """Another process is writing the same part of the run directory."""


def _open(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a+", encoding="utf-8")


@contextmanager
def held(path: Path, shared: bool = False, what: str = "") -> Iterator[None]:
    """Hold a lock on ``path`` without waiting; refuse with a clear message if it is taken."""
    fh = _open(path)
    try:
        try:
            fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise LockedError(
                f"{what or path.parent} is being written by {holder}; wait for it to finish, or use another --out"
            ) from None
        if not shared:
            fh.seek(0)
            fh.truncate()
            fh.write(f"harness pid {os.getpid()}")
            fh.flush()
        yield
    finally:
        fh.close()  # closing releases the lock


@contextmanager
def waiting(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``, waiting for it (short critical sections only)."""
    fh = _open(path)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()
