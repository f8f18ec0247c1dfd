"""How the engine calls an adapter, so that the accelerator never waits on the engine.

harness.run.predict sends up to ``pipeline_window`` batches before it receives the oldest one's
answer; a caller decides where the calls run:

- ``ModelThread`` (an in-process model, the default): one persistent thread per ``predict_batches``
  call runs the model on the batches queued to it, while the engine's thread finalises, scores and
  logs the previous batch's answers and copies out the next batch's pixels. A window of three
  keeps the next batch queued when the model finishes one (benchmarks/bench_overlap.py measures it).
- ``Direct`` (an in-process model under ``--timeout``, or one that declares ``model_thread`` False):
  the call runs in the engine's thread when its answer is asked for. Under a timeout that is so
  that the per-sample timer (SIGALRM, which Python delivers to the main thread only) interrupts
  the model's own Python code, as it always has: a thread cannot be interrupted, and a timed-out
  call left running there would hold the model while later batches waited behind it, so a run
  with a timeout gives up the overlap instead. An adapter whose calls are all CPU work in this
  interpreter has nothing to overlap (the GIL) and would only pay the hand-offs.
- ``Pipelined`` (a worker proxy, ``Adapter.pipeline_window`` > 1): the adapter's own
  ``send``/``receive``; the calls run in the worker (harness.run.remote).

Every caller answers ``receive`` with the predictions and the seconds the model's own call took
(for a worker, the wait for its answer: the worker fills in each prediction's own), and
``recall`` takes back the batches sent but not yet started after a failed call, so that an
out-of-memory batch's halves run before them, in the order a direct call would have run them.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from harness.adapter import Adapter
from harness.types import Prediction

# Batches queued to the model thread. With two, the next batch is there when the model finishes one as long as
# the engine finalises, scores and logs each batch faster than the model runs one; a third absorbs a slow batch
# (a burst of load elsewhere, a garbage collection) for one more batch of pixels held (docs/performance-overlap.md).
MODEL_WINDOW = 3

Items = list[tuple[np.ndarray, list[Any]]]
Answer = tuple[list[list[Prediction]], float]


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, recognised without importing torch."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def release_cuda_cache() -> None:
    torch = sys.modules.get("torch")  # only when a model already imported it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def call(adapter: Adapter, items: Items) -> list[list[Prediction]]:
    """One model call: ``predict_many`` for a multi-image adapter, else ``predict`` on the batch's one image."""
    if adapter.multi_image:
        return adapter.predict_many(items)
    (image, given), = items  # a one-image adapter is only ever planned one image per batch
    return [adapter.predict(image, given)]


class Direct:
    """The call happens in the caller's thread when its answer is asked for (a window of one)."""

    pipeline_window = 1

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.queued: deque[Items] = deque()

    def send(self, items: Items) -> None:
        self.queued.append(items)

    def receive(self) -> Answer:
        items = self.queued.popleft()
        start = time.perf_counter()
        return call(self.adapter, items), time.perf_counter() - start

    def recall(self) -> int:
        return 0  # nothing is ever sent and not started: a window of one

    def close(self) -> None:
        self.queued.clear()


class Pipelined:
    """An adapter that pipelines its own calls (a worker proxy); the worker times each call itself."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.pipeline_window = adapter.pipeline_window
        self.outstanding = 0

    def send(self, items: Items) -> None:
        self.adapter.send(items)
        self.outstanding += 1

    def receive(self) -> Answer:
        self.outstanding -= 1  # answered or failed, it is no longer in flight
        start = time.perf_counter()
        return self.adapter.receive(), time.perf_counter() - start

    def recall(self) -> int:
        return 0  # the worker holds what was sent: it answers (or fails) every request, in order

    def close(self) -> None:
        if self.outstanding:  # stopped early (fail-fast, an interrupt): no answer may be left unread in a pipe
            self.outstanding = 0
            cancel = getattr(self.adapter, "cancel", None)
            if cancel is not None:
                cancel()


_STOP = object()


def _cuda_setup(device: str | None) -> Any:
    """Read in the engine's thread: what the model thread sets so that its CUDA work goes where the
    engine's thread would have sent it. A CUDA device and stream are current per thread: a new
    thread starts on device 0 and the default stream. ``device`` is the one the adapter was loaded on
    (``cuda:N`` under torchrun); ``cuda`` without an index, or none, keeps the engine thread's current
    device. Nothing is done unless the model already imported torch and CUDA is there."""
    torch = sys.modules.get("torch")
    if torch is None or (device is not None and not device.startswith("cuda")):
        return None
    try:
        if not torch.cuda.is_available():
            return None
        index = torch.device(device).index if device else None
        if index is None:
            if not torch.cuda.is_initialized():
                return None  # no device chosen yet in any thread: the model thread starts where this one would
            index = torch.cuda.current_device()
        stream = torch.cuda.current_stream(index) if torch.cuda.is_initialized() else None
        return index, stream
    except Exception:
        return None


def _enter_cuda(setup: Any) -> None:
    if setup is None:
        return
    torch = sys.modules["torch"]
    index, stream = setup
    torch.cuda.set_device(index)
    if stream is not None:
        torch.cuda.set_stream(stream)


class ModelThread:
    """Runs an in-process adapter's calls on one persistent thread, up to ``window`` batches queued.

    ``receive`` returns the oldest batch's predictions and the model call's own time, measured in
    the model thread (a log's ``seconds`` is the model's, never the engine's wait). A call's
    exception is raised in the caller's thread with the model thread's traceback, and the model
    thread then waits until ``recall`` has taken back what it had not started (an out-of-memory
    batch's halves go first). ``close`` drops the batches not started and joins the thread once
    the call running, if any, returns: an interrupt stops the run within one batch.
    """

    def __init__(self, adapter: Adapter, window: int = MODEL_WINDOW, device: str | None = None) -> None:
        self.adapter = adapter
        self.pipeline_window = window
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[tuple[Any, float, bool]] = queue.SimpleQueue()
        self._go = threading.Event()  # set by recall (or close) after a failed call: the model thread goes on
        self._paused = False
        self._thread = threading.Thread(target=self._work, args=(_cuda_setup(device),), name="harness-model", daemon=True)
        self._thread.start()

    def _work(self, cuda: Any) -> None:
        try:
            _enter_cuda(cuda)
        except Exception as exc:  # every call would run on the wrong device: each batch fails, named
            failure: BaseException | None = exc
        else:
            failure = None
        while True:
            items = self._requests.get()
            if items is _STOP:
                return
            start = time.perf_counter()
            try:
                if failure is not None:
                    raise RuntimeError(f"the model thread could not select CUDA device {cuda[0]}: {failure}") from failure
                result: Any = call(self.adapter, items)
                failed = False
            except BaseException as exc:  # every failure is the engine's to judge, in its thread
                if is_out_of_memory(exc):
                    release_cuda_cache()  # in the thread that allocated, before the halves are tried
                result, failed = exc, True
            seconds = time.perf_counter() - start
            del items  # the engine's entries hold the pixels: they are freed in its thread, where they were made
            self._answers.put((result, seconds, failed))
            del result
            if failed:
                self._go.wait()
                self._go.clear()

    def send(self, items: Items) -> None:
        self._requests.put(items)

    def receive(self) -> Answer:
        result, seconds, failed = self._answers.get()
        if failed:
            self._paused = True
            raise result
        return result, seconds

    def recall(self) -> int:
        """Take back the batches sent and not started (the newest ones); the model thread goes on."""
        taken = 0
        while True:
            try:
                self._requests.get_nowait()
            except queue.Empty:
                break
            taken += 1
        if self._paused:
            self._paused = False
            self._go.set()
        return taken

    def close(self) -> None:
        self.recall()
        self._requests.put(_STOP)
        self._go.set()
        self._thread.join()  # the call running, if any, ends first; a second Ctrl-C leaves at once (a daemon thread)


def caller_for(adapter: Adapter, timeout: float | None, device: str | None = None) -> Any:
    """The caller of this adapter (see the module docstring)."""
    if adapter.pipeline_window > 1:
        return Pipelined(adapter)
    if timeout or not adapter.model_thread:
        return Direct(adapter)
    return ModelThread(adapter, MODEL_WINDOW, device)
