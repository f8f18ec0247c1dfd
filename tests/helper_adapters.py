"""Adapters used only by the tests: they count calls, fail on purpose, or misbehave."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.builtin_adapters.shapes_reasoner import ShapesReasoner
from harness.types import Prediction, PredictionStatus, Query, Sample


class CountingAdapter(Adapter):
    """Predicts the ground-truth box as a mask (an oracle) and counts every image and sample it sees."""

    info = AdapterInfo(name="counting", description="counts calls", outputs=("mask", "box"), box_space="norm1", oracle=True)
    calls: ClassVar[list[tuple[int, list[str]]]] = []

    def predict(self, image: np.ndarray, samples: Sequence[Sample]) -> list[Prediction]:  # type: ignore[override]
        CountingAdapter.calls.append((id(image), [s.id for s in samples]))
        h, w = image.shape[:2]
        out = []
        for s in samples:
            if s.gt.box is None:
                out.append(Prediction(mask=masks.empty(h, w)))
            else:
                x1, y1, x2, y2 = s.gt.box
                out.append(Prediction(mask=masks.box_mask(s.gt.box, h, w), box=(x1 / w, y1 / h, x2 / w, y2 / h)))
        return out


class FlakyAdapter(Adapter):
    """Raises on every second image, returns a wrongly sized mask for samples ending in /1."""

    info = AdapterInfo(name="flaky", description="fails on purpose")

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.images = 0

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        self.images += 1
        if self.images % 2 == 0:
            raise RuntimeError("CUDA went away")
        h, w = image.shape[:2]
        return [Prediction(mask=masks.empty(h + 1, w) if q.id.endswith("/1") else masks.full(h, w)) for q in queries]


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the runner recognises by name."""


class GreedyAdapter(Adapter):
    """Runs out of 'memory' on any batch of more than one sample."""

    info = AdapterInfo(name="greedy", description="OOM on batches > 1")

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        if len(queries) > 1:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        h, w = image.shape[:2]
        return [Prediction(mask=masks.full(h, w))]


class SlowAdapter(Adapter):
    """Sleeps on samples whose id ends in /0."""

    info = AdapterInfo(name="slow", description="too slow on purpose")

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        if any(q.id.endswith("/0") for q in queries):
            time.sleep(5)
        h, w = image.shape[:2]
        return [Prediction(mask=masks.empty(h, w)) for _ in queries]


class LoadsFileAdapter(Adapter):
    """Predicts full masks once its 'checkpoint' (option ``path``) loads: a file reading ``ok``."""

    info = AdapterInfo(name="loads-file", description="fails to load unless its checkpoint file reads ok")

    def __init__(self, path: str = "") -> None:
        super().__init__()
        self.options = {"path": path}

    def load(self, device: str = "cpu") -> None:
        with open(self.options["path"], encoding="utf-8") as fh:
            if fh.read().strip() != "ok":
                raise RuntimeError(f"{self.options['path']}: corrupt checkpoint")

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        h, w = image.shape[:2]
        return [Prediction(mask=masks.full(h, w)) for _ in queries]


class DrawingAdapter(Adapter):
    """A protocol that draws one sentence per image, like GLaMM's seeded draw of three: the
    first sample of each call gets the whole image as its mask, the others are not drawn."""

    info = AdapterInfo(name="drawing", description="predicts only the first sample of each image")

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        h, w = image.shape[:2]
        return [Prediction(mask=masks.full(h, w)) if k == 0 else
                Prediction(mask=None, status=PredictionStatus.NOT_DRAWN, error="not drawn: one sentence per image")
                for k in range(len(queries))]


class MultiShapes(ShapesReasoner):
    """The shapes reasoner declared multi-image: ``predict_many`` runs each image's queries through
    the one-image ``predict``, and counts how many images (and samples) every call was given."""

    info = AdapterInfo(name="multi-shapes", description="shapes-reasoner, several images per call",
                       outputs=ShapesReasoner.info.outputs, box_space=ShapesReasoner.info.box_space)
    multi_image = True
    calls: ClassVar[list[list[int]]] = []  # in-process: samples per image, one list per call

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.counts = {"multi_calls": 0.0, "multi_images": 0.0, "peak_images_per_call": 0.0}

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        MultiShapes.calls.append([len(q) for _, q in items])
        self.counts["multi_calls"] += 1
        self.counts["multi_images"] += len(items)
        self.counts["peak_images_per_call"] = max(self.counts["peak_images_per_call"], len(items))
        return [self.predict(image, queries) for image, queries in items]

    def stats(self) -> dict[str, float]:
        return dict(self.counts)


class PreparingShapes(MultiShapes):
    """Multi-image, with CPU work per image done ahead (``prepare_image``); counts which predicted images
    were prepared (the same array object), and whether preparing ran off the thread that predicts."""

    info = AdapterInfo(name="preparing-shapes", description="prepares each image ahead",
                       outputs=ShapesReasoner.info.outputs, box_space=ShapesReasoner.info.box_space)
    prepares_images = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._ready: dict[int, np.ndarray] = {}
        self._predicting: int | None = None  # the thread predict runs in
        self.counts.update({"prepared": 0.0, "prepared_elsewhere": 0.0, "hits": 0.0, "misses": 0.0})

    def prepare_image(self, image: np.ndarray) -> None:
        self.counts["prepared"] += 1
        self.counts["prepared_elsewhere"] += threading.get_ident() != self._predicting
        self._ready[id(image)] = image  # kept: an id stays this array's while it is held

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        self._predicting = threading.get_ident()
        for image, _ in items:
            hit = self._ready.get(id(image)) is image
            self.counts["hits" if hit else "misses"] += 1
        return super().predict_many(items)


class MultiGreedy(MultiShapes):
    """Multi-image, and out of 'memory' on any call of more than two samples."""

    info = AdapterInfo(name="multi-greedy", description="OOM on calls of more than two samples",
                       outputs=ShapesReasoner.info.outputs, box_space=ShapesReasoner.info.box_space)

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        if sum(len(q) for _, q in items) > 2:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().predict_many(items)


class PixelBoxes(Adapter):
    """Answers from exactly the pixels and the query it is given: a box (norm1) and its mask drawn from a
    digest of the image's bytes, the query's id and expression, and the digest as text; so a wrong image,
    a query paired with another's pixels or a changed order shows in the log. Records each call's sample
    ids and the thread it ran on (in-process)."""

    info = AdapterInfo(name="pixel-boxes", description="a box from a digest of the pixels and the query",
                       outputs=("mask", "box", "text"), box_space="norm1")
    calls: ClassVar[list[list[str]]] = []
    threads: ClassVar[set[str]] = set()

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        return self.predict_many([(image, queries)])[0]

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        type(self).calls.append([q.id for _, queries in items for q in queries])
        type(self).threads.add(threading.current_thread().name)
        return [[self.answer(image, q) for q in queries] for image, queries in items]

    @staticmethod
    def answer(image: np.ndarray, q: Query) -> Prediction:
        h, w = image.shape[:2]
        d = hashlib.sha256(np.ascontiguousarray(image).tobytes() + f"{q.id}\0{q.expression}".encode()).digest()
        x1, y1, x2, y2 = d[0] / 510, d[1] / 510, 0.5 + d[2] / 510, 0.5 + d[3] / 510
        return Prediction(mask=masks.box_mask((x1 * w, y1 * h, x2 * w, y2 * h), h, w), box=(x1, y1, x2, y2), text=d.hex()[:16])


class MultiPixelBoxes(PixelBoxes):
    """``pixel-boxes``, several images per call."""

    info = AdapterInfo(name="multi-pixel-boxes", description="pixel-boxes, several images per call",
                       outputs=PixelBoxes.info.outputs, box_space="norm1")
    multi_image = True
    calls: ClassVar[list[list[str]]] = []
    threads: ClassVar[set[str]] = set()


class GreedyPixelBoxes(MultiPixelBoxes):
    """``multi-pixel-boxes``, out of 'memory' on any call of more than two samples (its calls recorded, failed ones too)."""

    info = AdapterInfo(name="greedy-pixel-boxes", description="OOM on calls of more than two samples",
                       outputs=PixelBoxes.info.outputs, box_space="norm1")
    calls: ClassVar[list[list[str]]] = []
    threads: ClassVar[set[str]] = set()

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        out = super().predict_many(items)
        if sum(len(q) for _, q in items) > 2:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return out


class Interrupter(PixelBoxes):
    """Presses Ctrl-C (SIGINT to the engine's process: its own in-process, its parent from a worker) during its
    ``at``-th call, then finishes that call slowly, as a model in a long kernel would; only once per ``once``
    file (it creates it), so that the resumed run goes through."""

    info = AdapterInfo(name="interrupter", description="presses Ctrl-C during a call", outputs=PixelBoxes.info.outputs,
                       box_space="norm1")
    calls: ClassVar[list[list[str]]] = []
    threads: ClassVar[set[str]] = set()

    def __init__(self, at: int = 3, once: str = "", parent: bool = False) -> None:
        super().__init__()
        self.options = {"at": at, "once": once, "parent": parent}
        self.count = 0

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        self.count += 1
        once = self.options["once"]
        if self.count == self.options["at"] and not os.path.exists(once):
            open(once, "w").close()
            os.kill(os.getppid() if self.options["parent"] else os.getpid(), signal.SIGINT)
            time.sleep(0.5)
        return super().predict_many(items)


class Sleeper(Adapter):
    """Sleeps ``seconds`` per call (the model's own time), then predicts empty masks."""

    info = AdapterInfo(name="sleeper", description="sleeps a fixed time per call")

    def __init__(self, seconds: float = 0.05) -> None:
        super().__init__()
        self.options = {"seconds": seconds}

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        time.sleep(self.options["seconds"])
        h, w = image.shape[:2]
        return [Prediction(mask=masks.empty(h, w)) for _ in queries]


def predict_samples(adapter, samples, batch_size, timeout=None, fail_fast=False, prefetch=2, exif="ignore"):  # type: ignore[no-untyped-def]
    """(sample, prediction) for every sample, one at a time, in the engine's order (predict_batches, flattened)."""
    from harness.run.predict import predict_batches

    for ready in predict_batches(adapter, samples, batch_size, timeout, fail_fast, prefetch, exif):
        yield from ready
