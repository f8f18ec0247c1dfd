"""What an adapter's ``prepare_image`` computed ahead, kept for the ``predict`` call given the same array.

The engine calls ``Adapter.prepare_image`` in its decode-ahead thread on the very array it later passes
to ``predict`` / ``predict_many`` (``Adapter.prepares_images``); an adapter keeps the result here and
takes it back by that array (``harness_lens``, ``harness_evfsam``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np


class PreparedImages:
    """What ``prepare_image`` computed, by image array (the object: the entry holds it, so its id is not
    reused while kept), for the predict call that gets it; thread-safe, as it is filled from another
    thread. Images are prepared in the order they are predicted, so after a call everything prepared
    before its last image is dropped, that image kept (its sentences may go on in the next batch), and
    what was prepared for later batches stays; at most ``capacity`` are kept (an evicted one is
    computed again, with the same values)."""

    def __init__(self, capacity: int = 32) -> None:
        self._entries: OrderedDict[int, tuple[np.ndarray, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._capacity = capacity

    def put(self, image: np.ndarray, value: Any) -> None:
        with self._lock:
            self._entries[id(image)] = (image, value)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def get(self, image: np.ndarray) -> Any:
        with self._lock:
            got = self._entries.get(id(image))
        return got[1] if got is not None and got[0] is image else None

    def done_with(self, images: Sequence[np.ndarray]) -> None:
        """After a call on ``images``: drop them but the last, and whatever was prepared before it."""
        with self._lock:
            for image in images[:-1]:
                got = self._entries.get(id(image))
                if got is not None and got[0] is image:
                    del self._entries[id(image)]
            last = images[-1] if images else None
            got = self._entries.get(id(last)) if last is not None else None
            if got is not None and got[0] is last:
                while next(iter(self._entries)) != id(last):
                    self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
