"""Adapters for the isolated-worker tests: they die, hang, raise, print and count on purpose.

They are registered through a real entry point (a dist-info the tests put on PYTHONPATH), the
way a worker in another environment finds adapters.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.types import Prediction, Query

ENTRY_POINTS = {
    "suicidal": "worker_adapters:Suicidal",
    "sleepy": "worker_adapters:Sleepy",
    "raiser": "worker_adapters:Raiser",
    "noisy": "worker_adapters:Noisy",
    "greedy-plugin": "helper_adapters:GreedyAdapter",  # raises an OutOfMemoryError on batches > 1
    "multi-shapes": "helper_adapters:MultiShapes",  # several images per call
    "preparing-shapes": "helper_adapters:PreparingShapes",  # CPU work per image done ahead
    "multi-greedy": "helper_adapters:MultiGreedy",
    "pixel-boxes": "helper_adapters:PixelBoxes",  # answers from a digest of its pixels and query
    "multi-pixel-boxes": "helper_adapters:MultiPixelBoxes",
    "interrupter": "helper_adapters:Interrupter",  # presses Ctrl-C during a call
}


class Suicidal(Adapter):
    """SIGKILLs its own process on the samples named in ``kill_on`` (all when it is ``"*"``)."""

    info = AdapterInfo(name="suicidal", description="kills its process on chosen samples")

    def __init__(self, kill_on: Any = (), **options: Any) -> None:
        super().__init__(**options)
        self.options = {"kill_on": kill_on}

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        kill_on = self.options["kill_on"]
        if kill_on == "*" or any(q.id in kill_on for q in queries):
            os.kill(os.getpid(), signal.SIGKILL)
        h, w = image.shape[:2]
        return [Prediction(mask=masks.full(h, w)) for _ in queries]


class Sleepy(Adapter):
    """Hangs (60 s) on samples whose id ends in /0."""

    info = AdapterInfo(name="sleepy", description="hangs on purpose")

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        if any(q.id.endswith("/0") for q in queries):
            time.sleep(60)
        h, w = image.shape[:2]
        return [Prediction(mask=masks.empty(h, w)) for _ in queries]


class Raiser(Adapter):
    """Raises on every batch, like a model whose CUDA context is gone."""

    info = AdapterInfo(name="raiser", description="raises on purpose")

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        raise RuntimeError("CUDA went away")


class Noisy(Adapter):
    """Prints to stdout (Python and raw fd 1), returns bytes RLE counts, and counts its work."""

    info = AdapterInfo(name="noisy", description="prints to stdout and counts", outputs=("mask", "text"))

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.images = 0
        self.tokens = 0

    def load(self, device: str = "cpu") -> None:
        print(f"loading on {device}")

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        print("predicting, loudly")
        os.write(1, b"raw bytes on fd 1\n")
        self.images += 1
        self.tokens += 10 * len(queries)
        h, w = image.shape[:2]
        full = masks.full(h, w)
        return [Prediction(mask={"size": full["size"], "counts": full["counts"].encode()}, text=sys.prefix) for _ in queries]

    def stats(self) -> dict[str, float]:
        return {"segmenter_images": self.images, "generated_tokens": self.tokens, "peak_fake_bytes": 100.0 * self.images}
