"""Digests of preprocessed inputs, for the adapters' ``inputs`` hook (input-diff review)."""

from __future__ import annotations

import hashlib

import numpy as np


def array_sha1(array: np.ndarray) -> str:
    """sha1 of an array's shape, dtype and bytes (C order)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha1(str((a.shape, a.dtype.str)).encode())
    h.update(a.tobytes())
    return h.hexdigest()
