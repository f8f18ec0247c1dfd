"""Which samples go into which batch, and decoding those batches ahead of the model.

A one-image adapter is given batches of one image's samples (at most ``batch_size``); a
``multi_image`` adapter is given up to ``batch_size`` consecutive samples, spanning as many
images as it takes (an image's samples may be split between two batches). Either way the
samples keep their order, so a run's log is the same with or without multi-image batching.

The Prefetcher decodes the planned batches in a daemon thread into a bounded queue, so the
next batch's pixels are ready when the model finishes the current one. An image is decoded
once even when its samples span two batches (the last image is kept). An unreadable image
(ImageError) becomes the entry's ``image`` for the caller to record as failed samples; any
other exception of the decoder is re-raised in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from harness.data.images import Decoded, ImageError


@dataclass
class Entry:
    """One sample of a batch: its position in the run's order, its image path, and (once decoded) the pixels."""

    seq: int
    sample: Any
    path: str
    image: np.ndarray | Decoded | ImageError | None = None  # Decoded until the consumer copies it out


def plan_batches(groups: Sequence[tuple[str, Sequence[Any]]], batch_size: int, multi_image: bool) -> list[list[Entry]]:
    """Batches of Entries (positions numbered in order) from ``image_groups`` output."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    batches: list[list[Entry]] = []
    current: list[Entry] = []
    seq = 0
    for path, group in groups:
        if not multi_image and current:  # a one-image adapter's batch never straddles two images
            batches.append(current)
            current = []
        for sample in group:
            current.append(Entry(seq, sample, path))
            seq += 1
            if len(current) == batch_size:
                batches.append(current)
                current = []
    if current:
        batches.append(current)
    return batches


_END = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Prefetcher:
    """Iterate over ``batches`` with every entry's ``image`` filled in, decoded ``depth`` batches ahead.

    Use it as a context manager: leaving it (normally, or by an exception in the consumer)
    stops the thread and drops what it decoded.
    """

    def __init__(self, batches: list[list[Entry]], decode: Callable[[str], np.ndarray | Decoded], depth: int = 2) -> None:
        # Consumed as they are decoded: a batch the consumer is done with is referenced from nowhere,
        # so its pixels are freed (holding the planned list would keep every image of the split).
        self._batches, self._decode = deque(batches), decode
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="harness-prefetch", daemon=True)

    def __enter__(self) -> Iterator[list[Entry]]:
        self._thread.start()
        return self._iterate()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        last: tuple[str, np.ndarray | Decoded | ImageError] | None = None
        try:
            while self._batches:
                batch = self._batches.popleft()
                for e in batch:
                    if last is None or last[0] != e.path:
                        try:
                            last = (e.path, self._decode(e.path))
                        except ImageError as exc:  # a failed sample of that image, named, as in-line decoding did
                            last = (e.path, exc)
                    e.image = last[1]
                if not self._put(batch):
                    return
        except BaseException as exc:
            self._put(_Raised(exc))
            return
        self._put(_END)

    def _iterate(self) -> Iterator[list[Entry]]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item


def prepared(adapter: Any, image: np.ndarray) -> np.ndarray:
    """``image``, after ``adapter.prepare_image`` on it (an optimisation: its failure is the predict call's to meet).

    The array is then made in this thread and freed in the model's: the allocator churn that once cost a
    zero-cost model 2 ms an image (issue 15) is nothing beside a model with CPU work to do ahead."""
    try:
        adapter.prepare_image(image)
    except Exception:  # predict meets the same failure, reported with its batch
        pass
    return image
