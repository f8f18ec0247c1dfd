"""Calling an adapter on one image's samples, so that one bad sample never stops a run.

The image is decoded once for all its samples; batches never straddle two images. Every
failure becomes a failed Prediction with its reason: an unreadable image, an adapter
exception, a timeout, a wrongly sized or malformed mask, a non-finite box. On CUDA
out-of-memory the batch is halved and retried, down to one sample, and the halvings are
recorded. ``fail_fast`` re-raises the first failure instead, for debugging.

This is where samples lose their answers: an adapter is given ``Sample.query()`` (no ground
truth, no no-target flag, only the metadata a model may use); only an oracle
(``AdapterInfo.oracle``) is given the Samples themselves.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from harness import masks
from harness.adapter import Adapter, box_to_pixels
from harness.data.images import Decoded, ImageError, decode, image_size
from harness.types import Prediction, Sample


class SampleTimeout(Exception):
    """The adapter took longer than the per-sample time limit allows."""


@dataclass(frozen=True)
class Predicted:
    """A prediction and how many times its batch was halved after running out of memory."""

    prediction: Prediction
    oom_halvings: int = 0


def image_groups(samples: Sequence[Sample]) -> Iterator[tuple[str, list[Sample]]]:
    """Samples grouped by image, groups in order of first appearance."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.image, []).append(s)
    yield from groups.items()


def read_image(adapter: Adapter, image_path: str, exif: str = "ignore") -> np.ndarray | Decoded:
    """The image an adapter is called with: decoded here (``pixels`` makes it the array), or,
    when its worker decodes (one decode per image), an empty (h, w, 0) array of the size read
    from the file's header."""
    if adapter.decodes_images:
        return np.empty((*image_size(image_path, exif), 0), dtype=np.uint8)
    return decode(image_path, exif)


def pixels_of(read: np.ndarray | Decoded) -> np.ndarray:
    """The array of what ``read_image`` returned, made in the calling (main) thread."""
    return read if isinstance(read, np.ndarray) else read.array()


def prefetched(adapter: Adapter, groups: Iterator[tuple[str, list[Sample]]], exif: str = "ignore"
               ) -> Iterator[tuple[str, list[Sample], Future[np.ndarray | Decoded]]]:
    """The image groups, each with its image being read one group ahead in a thread.

    Pillow and libjpeg release the GIL while decoding, so the next image is decoded while
    this one's samples are predicted, scored and logged: on two or more cores the run costs
    about its decodes, not decodes plus bookkeeping. The pixels are copied out into their
    array in the main thread (``pixels_of``; why: ``harness.data.images.Decoded``). At most
    two decoded images are held. A read error stays in its future and surfaces where that
    image is predicted.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-decode") as pool:
        queued: tuple[str, list[Sample], Future[np.ndarray | Decoded]] | None = None  # submitted, not yet handed over
        try:
            for image_path, group in groups:
                ahead = (image_path, group, pool.submit(read_image, adapter, image_path, exif))
                if queued is None:
                    queued = ahead
                    continue
                current, queued = queued, ahead
                yield current
            if queued is not None:
                current, queued = queued, None
                yield current
        finally:
            if queued is not None:  # the consumer stopped early: do not decode what nobody will use
                queued[2].cancel()


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, recognised without importing torch."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise SampleTimeout in the main thread after ``seconds`` (no limit elsewhere or when None).

    SIGALRM interrupts Python code; a long native call (a CUDA kernel) is interrupted when it
    returns to Python. Isolated workers are killed instead (harness.run.remote).
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise SampleTimeout(f"timed out after {seconds:.1f} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def finalize(pred: Prediction, sample: Sample, adapter: Adapter, height: int, width: int, seconds: float) -> Prediction:
    """Check the mask's size, convert the box to original pixels, fill in the timing."""
    changes: dict[str, Any] = {}
    if pred.seconds is None:
        changes["seconds"] = seconds
    if pred.not_drawn:  # left out by the protocol: nothing of it is kept but the reason
        return replace(pred, mask=None, box=None, **changes)
    if pred.mask is not None:
        try:
            changes["mask"] = masks.validate(pred.mask, height, width, f"{adapter.info.name} on {sample.id}")
        except masks.MaskError as exc:
            changes.update(mask=None, error=str(exc))
    if pred.box is not None:
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in pred.box):
            changes.update(box=None, mask=None, error=f"{adapter.info.name} on {sample.id}: box {list(pred.box)!r} is not 4 finite numbers")
        else:
            changes["box"] = box_to_pixels(pred.box, adapter.info.box_space, width, height)
    return replace(pred, **changes) if changes else pred


def _release_cuda_cache() -> None:
    torch = sys.modules.get("torch")  # only when a model already imported it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def given_to(adapter: Adapter, batch: Sequence[Sample]) -> list[Any]:
    """What ``adapter`` is given for ``batch``: the Samples for an oracle, their Queries for every other adapter."""
    return list(batch) if adapter.info.oracle else [s.query() for s in batch]


def _call(adapter: Adapter, image: np.ndarray, batch: list[Sample], timeout: float | None) -> list[Prediction]:
    given = given_to(adapter, batch)
    with time_limit(timeout * len(batch) if timeout else None):
        preds = adapter.predict(image, given)
    if len(preds) != len(batch):
        raise RuntimeError(f"returned {len(preds)} predictions for {len(batch)} samples")
    return preds


def predict_on_image(
    adapter: Adapter, image_path: str, samples: list[Sample], batch_size: int,
    timeout: float | None = None, fail_fast: bool = False, image: Future[np.ndarray | Decoded] | None = None,
    exif: str = "ignore",
) -> Iterator[tuple[Sample, Predicted]]:
    """Yield (sample, prediction) for every sample of one image, batch by batch.

    ``image`` is the image already being read (``prefetched``); without it it is read here.
    ``exif`` is the suite's image convention (a worker is told it by the runner and decodes the same way).
    """
    try:
        # one decode per image; when a worker decodes, here only the size, for finalize
        pixels = pixels_of(image.result() if image is not None else read_image(adapter, image_path, exif))
    except ImageError as exc:
        if fail_fast:
            raise
        for s in samples:
            yield s, Predicted(Prediction(mask=None, error=str(exc)))
        return
    h, w = pixels.shape[:2]
    pending: list[tuple[list[Sample], int]] = [(samples[i : i + batch_size], 0) for i in range(0, len(samples), batch_size)]
    while pending:
        batch, halvings = pending.pop(0)
        start = time.perf_counter()
        try:
            preds = _call(adapter, pixels, batch, timeout)
        except Exception as exc:
            if fail_fast:
                raise
            if is_out_of_memory(exc) and len(batch) > 1:
                _release_cuda_cache()
                mid = len(batch) // 2
                pending[:0] = [(batch[:mid], halvings + 1), (batch[mid:], halvings + 1)]
                continue
            msg = f"{adapter.info.name} failed on {image_path}: {type(exc).__name__}: {exc}"
            for s in batch:
                yield s, Predicted(Prediction(mask=None, error=msg), halvings)
            continue
        per_sample = (time.perf_counter() - start) / len(batch)
        for s, p in zip(batch, preds):
            final = finalize(p, s, adapter, h, w, per_sample)
            if fail_fast and final.failed:
                raise RuntimeError(f"{s.id}: {final.error or 'the adapter returned no mask'}")
            yield s, Predicted(final, halvings)
