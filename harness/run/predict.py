"""Calling an adapter on a split's samples, batch by batch, so that one bad sample never stops a run.

Each image is decoded once for all its samples. A one-image adapter gets batches of one
image's samples; a ``multi_image`` adapter gets up to ``batch_size`` samples spanning several
images (harness.run.batches plans both). The next batches are decoded in a background thread,
and the model runs on a thread of its own (or in its worker) while this thread finalises the
last batch's answers and the runner scores and logs them (harness.run.callers); predictions
still come back in the samples' order, so the logs are the same either way. Every failure
becomes a failed Prediction with its reason: an unreadable image, an adapter exception, a timeout, a wrongly
sized or malformed mask, a box that is not four numbers (a non-finite, negative or inverted box
keeps its mask: scoring's box rule fails its box metric, harness.score.scoring.bad_box). On CUDA out-of-memory the batch is halved and
retried, down to one sample, and the halvings are recorded. ``fail_fast`` re-raises the first
failure instead, for debugging.

This is where samples lose their answers: an adapter is given ``Sample.query()`` (no ground
truth, no no-target flag, only the metadata a model may use); only an oracle
(``AdapterInfo.oracle``) is given the Samples themselves.
"""

from __future__ import annotations

import signal
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from harness import masks
from harness.adapter import Adapter, box_to_pixels
from harness.data.images import Decoded, ImageError, decode, image_size
from harness.run.batches import Entry, Prefetcher, plan_batches, prepared
from harness.run.callers import caller_for, is_out_of_memory
from harness.types import Prediction, Sample, validate_instances


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


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise SampleTimeout in the main thread after ``seconds`` (no limit elsewhere or when None).

    SIGALRM interrupts Python code; a long native call (a CUDA kernel) is interrupted when it
    returns to Python. An in-process model therefore runs in this thread under a timeout
    (harness.run.callers.Direct); isolated workers are killed instead (harness.run.remote).
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


_FIELDS = tuple(f.name for f in fields(Prediction))


def _replaced(pred: Prediction, changes: dict[str, Any]) -> Prediction:
    """``dataclasses.replace`` without its per-call introspection of the fields (it runs once per sample)."""
    return Prediction(*[changes[f] if f in changes else getattr(pred, f) for f in _FIELDS])


def _four_numbers(box: Sequence[Any]) -> bool:
    return len(box) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)


def finalize(pred: Prediction, sample: Sample, adapter: Adapter, height: int, width: int, seconds: float) -> Prediction:
    """Check the mask's size, convert the box to original pixels, fill in the timing."""
    changes: dict[str, Any] = {}
    if pred.seconds is None:
        changes["seconds"] = seconds
    if pred.mask is not None:
        try:
            changes["mask"] = masks.validate(pred.mask, height, width, f"{adapter.info.name} on {sample.id}")
        except masks.MaskError as exc:
            changes.update(mask=None, error=str(exc))
    if pred.box is not None:
        if len(pred.box) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pred.box):
            changes.update(box=None, mask=None, error=f"{adapter.info.name} on {sample.id}: box {list(pred.box)!r} is not 4 numbers")
        else:  # a non-finite, negative or inverted box is kept: scoring fails its box metric and counts it (bad_box)
            changes["box"] = box_to_pixels(pred.box, adapter.info.box_space, width, height)
    if pred.instances is not None and "error" in changes:  # the sample failed on its mask or box: no instances either
        changes["instances"] = None
    elif pred.instances is not None:
        where = f"{adapter.info.name} on {sample.id}"
        try:
            checked = validate_instances(pred.instances, height, width, where)
            bad = next((k for k, i in enumerate(checked) if i.box is not None and not _four_numbers(i.box)), None)
            if bad is not None:
                raise masks.MaskError(f"{where}: instance {bad}: box {list(checked[bad].box or ())!r} is not 4 numbers")
            changes["instances"] = tuple(
                i if i.box is None else replace(i, box=box_to_pixels(i.box, adapter.info.box_space, width, height)) for i in checked)
        except masks.MaskError as exc:  # one bad instance fails its sample, as a bad mask does
            changes.update(instances=None, mask=None, error=str(exc))
    return _replaced(pred, changes) if changes else pred


def given_to(adapter: Adapter, batch: Sequence[Sample]) -> list[Any]:
    """What ``adapter`` is given for ``batch``: the Samples for an oracle, their Queries for every other adapter."""
    return list(batch) if adapter.info.oracle else [s.query() for s in batch]


def _decoder(adapter: Adapter, exif: str) -> Any:
    """What the prefetch thread reads per image, by the suite's image convention ``exif``."""
    if adapter.decodes_images:  # one decode per image: the worker's; here only the size, for finalize
        return lambda path: np.empty((*image_size(path, exif), 0), dtype=np.uint8)
    if adapter.prepares_images:  # the thread also does the adapter's CPU work on the array predict will get
        return lambda path: prepared(adapter, decode(path, exif).array())
    # Decoded in the thread, copied out to its array in the main one (why: harness.data.images.Decoded).
    return lambda path: decode(path, exif)


def _items(adapter: Adapter, job: list[Entry]) -> list[tuple[np.ndarray, list[Any]]]:
    """The adapter's arguments for a job: one (image, queries) per run of consecutive entries on one image."""
    items: list[tuple[np.ndarray, list[Any]]] = []
    last: str | None = None
    for e in job:
        if e.path != last:
            items.append((e.image, []))  # type: ignore[arg-type]  # a job holds decoded entries only
            last = e.path
        items[-1][1].append(e.sample)
    return [(image, given_to(adapter, batch)) for image, batch in items]


def _failure_message(adapter: Adapter, job: list[Entry], exc: BaseException) -> str:
    paths = list(dict.fromkeys(e.path for e in job))
    where = paths[0] if len(paths) == 1 else f"a batch of {len(paths)} images ({', '.join(paths)})"
    return f"{adapter.info.name} failed on {where}: {type(exc).__name__}: {exc}"


def predict_batches(
    adapter: Adapter, samples: Sequence[Sample], batch_size: int, timeout: float | None = None, fail_fast: bool = False,
    prefetch: int = 2, exif: str = "ignore", device: str | None = None,
) -> Iterator[list[tuple[Sample, Predicted]]]:
    """``predict_samples``, a list at a time: what became ready together (a batch's answers, the
    samples of an unreadable image), so the runner writes each batch's lines with one write.

    ``device`` is the one the adapter was loaded on: the model thread selects it (harness.run.callers)."""
    done: dict[int, tuple[Sample, Predicted]] = {}  # by position: results leave in the samples' order
    next_out = 0
    pending: deque[tuple[list[Entry], int]] = deque()  # halves of an out-of-memory batch, before new batches
    inflight: deque[tuple[list[Entry], int]] = deque()

    def fail(job: list[Entry], error: str, halvings: int) -> None:
        for e in job:
            done[e.seq] = (e.sample, Predicted(Prediction(mask=None, error=error), halvings))
            e.image = None

    pixels: tuple[Decoded, np.ndarray] | None = None  # the last image copied out: its samples may span two batches

    # The planned batches go to the prefetcher alone: nothing here keeps a batch it is done with.
    planned = plan_batches(list(image_groups(samples)), batch_size, adapter.multi_image)
    with Prefetcher(planned, _decoder(adapter, exif), prefetch) as decoded:
        del planned
        caller = caller_for(adapter, timeout, device)
        try:
            while True:
                while len(inflight) < caller.pipeline_window:
                    if pending:
                        job, halvings = pending.popleft()
                    else:
                        batch = next(decoded, None)
                        if batch is None:
                            break
                        job, halvings = [], 0
                        for e in batch:  # an unreadable image fails its own samples, named, as before
                            if isinstance(e.image, Decoded):
                                if pixels is None or pixels[0] is not e.image:
                                    pixels = (e.image, e.image.array())
                                e.image = pixels[1]
                            if isinstance(e.image, ImageError):
                                if fail_fast:
                                    raise e.image
                                done[e.seq] = (e.sample, Predicted(Prediction(mask=None, error=str(e.image))))
                            else:
                                job.append(e)
                        if not job:
                            continue
                    try:
                        caller.send(_items(adapter, job))
                    except Exception as exc:  # nothing was sent (a request over the pipe's limit): the batch fails
                        if fail_fast:
                            raise
                        fail(job, _failure_message(adapter, job, exc), halvings)
                        continue
                    inflight.append((job, halvings))
                if not inflight:
                    break
                job, halvings = inflight.popleft()
                try:
                    with time_limit(timeout * len(job) if timeout else None):
                        answer, seconds = caller.receive()
                    preds = [p for item in answer for p in item]
                    if len(preds) != len(job):
                        raise RuntimeError(f"returned {len(preds)} predictions for {len(job)} samples")
                except Exception as exc:
                    if fail_fast:
                        raise
                    # What was sent after this batch and not started comes back, to run after its halves
                    # (if any) in the order a direct call would have run them.
                    recalled = [inflight.pop() for _ in range(caller.recall())]
                    pending.extendleft(recalled)
                    if is_out_of_memory(exc) and len(job) > 1:
                        mid = len(job) // 2
                        pending.extendleft([(job[mid:], halvings + 1), (job[:mid], halvings + 1)])
                        continue
                    fail(job, _failure_message(adapter, job, exc), halvings)
                else:
                    per_sample = seconds / len(job)
                    for e, p in zip(job, preds):
                        h, w = e.image.shape[:2]  # type: ignore[union-attr]
                        final = finalize(p, e.sample, adapter, h, w, per_sample)
                        if fail_fast and final.mask is None:
                            raise RuntimeError(f"{e.sample.id}: {final.error or 'the adapter returned no mask'}")
                        done[e.seq] = (e.sample, Predicted(final, halvings))
                        e.image = None  # done with its pixels: the entry may outlive the batch (an OOM half's sibling)
                ready = []
                while next_out in done:
                    ready.append(done.pop(next_out))
                    next_out += 1
                if ready:
                    yield ready
            ready = []
            while next_out in done:  # samples of unreadable images after the last batch
                ready.append(done.pop(next_out))
                next_out += 1
            if ready:
                yield ready
        finally:
            caller.close()  # stops the model thread; a worker stopped with requests in flight is replaced
