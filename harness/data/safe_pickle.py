"""Load data pickles (the REFER ``refs(unc).p`` files) without executing anything.

A pickle is a program: ``GLOBAL``/``STACK_GLOBAL`` opcodes import any callable and
``REDUCE`` calls it, so ``pickle.load`` on a downloaded file runs whatever the file says.
The refs pickles only hold lists, dicts, strings and numbers, which unpickle without any
global lookup. ``RestrictedUnpickler.find_class`` therefore refuses every global: a file
that names one (``os.system``, ``builtins.eval``, ``marshal.loads`` for a code object,
``copyreg._reconstructor`` for an instance, even ``builtins.set``) is rejected before
anything is called. Persistent ids are refused too (the stdlib already does that when no
``persistent_load`` is defined).

The refs files were written by Python 2: their ``str`` objects arrive as bytes. They are
decoded as UTF-8 (a superset of the ASCII that Python 3's own default assumes), falling
back to Latin-1 for a file whose bytes are not valid UTF-8.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


class UnsafePickleError(HarnessError):
    """A pickle that needs more than plain containers and scalars, or that cannot be read."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves no global at all: only built-in containers and scalars load."""

    def __init__(self, file: Any, *, where: str, encoding: str = "utf-8") -> None:
        super().__init__(file, encoding=encoding, errors="strict")
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"{self.where}: refused to load: the pickle asks for {module}.{name}; only plain lists, dicts, "
            "strings and numbers are accepted (nothing in the file was executed)"
        )


def loads(data: bytes, where: str = "<bytes>") -> Any:
    """Unpickle ``data`` through the restricted unpickler; ``where`` names the file in errors."""
    last: Exception | None = None
    for encoding in ("utf-8", "latin-1"):
        try:
            return RestrictedUnpickler(io.BytesIO(data), where=where, encoding=encoding).load()
        except UnsafePickleError:
            raise
        except UnicodeDecodeError as exc:  # a Python 2 str that is not UTF-8: retry as Latin-1
            last = exc
            continue
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                MemoryError, OverflowError, RecursionError) as exc:
            raise UnsafePickleError(f"{where}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    raise UnsafePickleError(f"{where}: not a readable pickle ({last})")


def load(path: str | Path) -> Any:
    """Read and unpickle the file at ``path`` through the restricted unpickler."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UnsafePickleError(f"{p}: file does not exist") from None
    except OSError as exc:
        raise UnsafePickleError(f"{p}: cannot be read ({exc})") from exc
    return loads(data, where=str(p))
