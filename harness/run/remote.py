"""Models in their own interpreters: RemoteAdapter drives ``python -m harness.run.worker`` over a pipe.

To the runner a RemoteAdapter is an ordinary Adapter (same info, config and fingerprint as
in-process), so isolation is a deployment choice, not a different experiment. The worker's
stderr goes to ``RUN/<model>/worker.log``. When the worker dies (killed by the OOM killer, a
segfault in a CUDA extension, ``os._exit``) the batch it was on is recorded as failed with
the exit code, and a fresh worker is started for the next batch; after ``max_restarts``
losses in a row the run stops (WorkerAbort) rather than failing every remaining sample,
which a resume would not redo. A run-level timeout (SIGALRM in the runner) interrupts the
wait for a reply; the busy worker is then killed and replaced.

Requests are pipelined (``pipeline_window``, harness.run.predict): the next batch is sent before
the last answer is read. The worker answers in order, so when it is lost on a batch the batches
sent after it never started: they are sent again to the fresh worker, and only the batch it was
lost on fails, as without pipelining. A request the dead worker could not be sent (a broken pipe)
waits for the next worker: a batch fails only if its worker was lost while holding it.
A served ``multi_image`` adapter gets ``predict_many`` requests.

``make_adapter`` is the runner's one entry point: it decides, per model, between in-process
and isolated (precedence: ``python:``, then ``env:``, then a managed environment providing
the adapter, see harness.run.envs, else in-process).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from harness.adapter import Adapter, AdapterInfo
from harness.errors import HarnessError
from harness.run.channel import Channel, Lost, alarm_paused, exit_text
from harness.run.worker import PROTOCOL, peak_gpu_memory, query_to_json
from harness.types import Prediction, Query

if TYPE_CHECKING:
    from harness.run.config import ModelSpec


class WorkerError(HarnessError):
    """A worker that cannot be started, greeted or loaded; names the interpreter and the log."""


class WorkerAbort(BaseException):
    """The worker was lost too many times in a row; the run stops.

    A BaseException on purpose: the runner turns every Exception from ``predict`` into failed
    samples, and failed samples are never redone by a resume. Stopping keeps the remaining
    samples for the resume that follows the fix.
    """


class RemoteException(Exception):
    """An exception raised by the adapter inside the worker, re-raised here under its own name.

    Subclasses are made per remote type name, so the runner's message ("X failed on IMG:
    RuntimeError: ...") and its out-of-memory recognition (by type name) match in-process.
    """

    remote_traceback: str | None = None


_REMOTE_TYPES: dict[str, type[RemoteException]] = {}


def _remote_exception(reply: Mapping[str, Any]) -> RemoteException:
    name = str(reply.get("type") or "RemoteError")
    name = name if name.isidentifier() else "RemoteError"
    if name not in _REMOTE_TYPES:
        _REMOTE_TYPES[name] = type(name, (RemoteException,), {"__module__": __name__})
    exc = _REMOTE_TYPES[name](str(reply.get("error", "")))
    exc.remote_traceback = reply.get("traceback")
    if exc.remote_traceback and hasattr(exc, "add_note"):  # shown by --fail-fast tracebacks, not stored per sample
        exc.add_note("traceback in the worker:\n" + exc.remote_traceback)
    return exc


def merge_counters(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Counters of two worker lives (or two shards): ``peak_*`` by max, the rest by sum."""
    out = dict(a)
    for k, v in b.items():
        out[k] = max(out[k], v) if k in out and k.startswith("peak_") else out.get(k, 0.0) + v
    return out


def counters_since(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    """One split's share of cumulative counters (``peak_*`` stay cumulative maxima)."""
    return {k: v if k.startswith("peak_") else v - before.get(k, 0.0) for k, v in after.items()}


def _close_holder(holder: list[Channel | None], log: list[IO[bytes] | None]) -> None:
    if holder[0] is not None:
        holder[0].close()
        holder[0] = None
    if log[0] is not None:
        log[0].close()
        log[0] = None


@dataclass
class _Flight:
    """A batch sent to the worker and not yet received: the request, its images' sample counts, its
    first image, and the reason its samples failed when the worker was lost before answering."""

    msg: dict[str, Any]
    sizes: list[int]
    image: str
    request_id: int | None = None
    lost: str | None = field(default=None)

    def failed(self) -> list[list[Prediction]]:
        return [[Prediction(mask=None, error=self.lost) for _ in range(n)] for n in self.sizes]


class RemoteAdapter(Adapter):
    """An adapter served by ``python -m harness.run.worker`` in another interpreter."""

    info = AdapterInfo(name="remote", description="a model served by harness.run.worker in its own interpreter")
    decodes_images = True  # the worker decodes the file; the parent needs only its size
    # Batches sent before the oldest answer is read: the worker starts the next while the parent
    # scores and logs the last. Replies come in order; a lost worker fails the batch it was on.
    # Three, so that the worker has the next batch read and decoded when it finishes one: the parent
    # sends batch k+3 once it has logged batch k, two model calls ahead of its need, where a window
    # of two left one call's time for the parent's logging, the pipe and the worker's decoding
    # together, which a busy machine overran (docs/performance-overlap.md has the figures).
    pipeline_window = 3

    def __init__(self, adapter: str, options: Mapping[str, Any] | None = None, python: str | None = None, *,
                 label: str | None = None, env_vars: Mapping[str, str] | None = None, log_path: Path | None = None,
                 max_restarts: int = 3, env_name: str | None = None) -> None:
        super().__init__()
        self.spec, self.options = adapter, dict(options or {})
        self.python = python or sys.executable
        self.label, self.env_name = label or adapter, env_name
        self.log_path, self.max_restarts = log_path, max_restarts
        self.restarts = 0
        self._env = {**os.environ, **(env_vars or {})}
        self._device: str | None = None
        self._lost_in_a_row = 0
        self._carried: dict[str, float] = {}
        self._inflight: deque[_Flight] = deque()
        self._current: dict[str, float] = {}
        self._channel: list[Channel | None] = [None]  # lists, so the finalizer holds no reference to self
        self._log: list[IO[bytes] | None] = [None]
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log[0] = log_path.open("ab", buffering=0)
        weakref.finalize(self, _close_holder, self._channel, self._log)
        hello = self._start(f"starting worker for {self.label}")
        raw = hello["info"]
        self.info = AdapterInfo(name=raw["name"], description=raw["description"], outputs=tuple(raw["outputs"]),  # type: ignore[misc]
                                box_space=raw["box_space"], version=raw["version"], checkpoints=tuple(raw["checkpoints"]),
                                reference=bool(raw.get("reference")))
        self.multi_image = bool(hello.get("multi_image"))  # the served adapter's declaration
        self._config: dict[str, Any] = hello["config"]
        self._runtime: dict[str, Any] = hello.get("runtime", {})

    # -- the Adapter interface -------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return self._config

    def runtime_info(self) -> dict[str, Any]:
        """Where the model ran: the worker's interpreter and versions, its environment, its log."""
        return {**self._runtime, "env": self.env_name, "log": str(self.log_path) if self.log_path else None}

    def load(self, device: str = "cpu") -> None:
        self._device = device
        channel = self._channel[0]
        if channel is None or not channel.alive():
            if channel is not None:
                self._discard(kill=True, note="found dead before loading")
            self._start(f"starting worker for {self.label}")  # loads on the way
            return
        self._load(channel)

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        self.send([(image, queries)])
        return self.receive()[0]

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        self.send(items)
        return self.receive()

    # -- pipelining (harness.run.predict sends up to pipeline_window batches before reading) --

    def send(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> None:
        """Send one batch's request without waiting for its answer; ``receive`` returns the answers in order.

        A worker lost while sending (or that cannot be restarted) is recorded with the batch, whose
        samples then come back failed from ``receive``, as do those of every batch sent before it
        and not yet answered. RequestTooLarge is raised: nothing was sent, the worker is fine.
        """
        # Queries only (query_to_json refuses anything else): no ground truth ever crosses the pipe.
        wire: list[dict[str, Any]] = [{"image": queries[0].image, "queries": [query_to_json(q) for q in queries]}
                                      for _, queries in items]
        # A multi-image adapter is always called through predict_many, as in-process, even on one image.
        many = self.multi_image or len(wire) > 1
        msg: dict[str, Any] = {"op": "predict_many", "items": wire} if many else {"op": "predict", **wire[0]}
        if self.exif != "ignore":  # the worker decodes by the suite's image convention
            msg["exif"] = self.exif
        if self._channel[0] is not None:
            self._channel[0].check_size(msg)  # RequestTooLarge before anything is queued
        self._send_flight(_Flight(msg, [len(q) for _, q in items], str(wire[0]["image"])))

    def _send_flight(self, flight: _Flight) -> None:
        try:
            if self._channel[0] is None:
                with alarm_paused():  # start-up and model loading are not this batch's time
                    self._start(f"restarting worker for {self.label} (restart {self.restarts})")
            channel = self._channel[0]
            assert channel is not None
            flight.request_id = channel.send(flight.msg)
        except Lost as exc:
            # The worker was gone before this request reached it: it never saw this batch, which is
            # kept (undelivered) for the next worker rather than failed. Whether the worker died on a
            # batch it was given and had not answered, or answered it first, only its pipe can say:
            # ``receive`` reads that batch's answer or the end of the pipe, and a loss there fails that
            # batch alone and sends the undelivered ones again.
            flight.request_id = None
            self._inflight.append(flight)
            if not any(f.lost is None and f.request_id is not None for f in self._inflight):
                # Every batch it was given was answered: it died between requests, on none of them.
                self._lose(exc, None)
                self._resend_window()
            return
        except WorkerError as exc:  # no worker could be started: nothing in the window can run
            self._inflight.append(flight)
            culprit = next(f for f in self._inflight if f.lost is None)
            reason = self._lose(exc, culprit.image)
            for f in self._inflight:
                f.lost = reason if f.image == culprit.image else f"{reason} (this batch, on image {f.image}, was in flight)"
            return
        self._inflight.append(flight)

    def receive(self) -> list[list[Prediction]]:
        """The answer to the oldest batch sent and not yet received, one list per image.

        When the worker is lost on this batch (a crash, a timeout), only this batch fails: the worker
        answers in order, so the batches sent after it never ran, and they are sent again to the
        fresh worker, as they would have been without pipelining.
        """
        flight = self._inflight.popleft()
        if flight.lost is not None:
            return flight.failed()
        if flight.request_id is None:  # undelivered, and every batch before it answered: the loss was no batch's
            self._inflight.appendleft(flight)
            self._lose(Lost("it was gone before it read the next request"), None)
            self._resend_window()
            flight = self._inflight.popleft()
            if flight.lost is not None:
                return flight.failed()
        channel = self._channel[0]
        assert channel is not None and flight.request_id is not None
        try:
            reply = channel.receive(flight.request_id)
        except Lost as exc:
            flight.lost = self._lose(exc, flight.image)
            self._resend_window()
            return flight.failed()
        except BaseException as exc:  # a timeout or Ctrl-C while the worker is busy: it cannot be trusted
            self._discard(kill=True, note=f"interrupted by {type(exc).__name__}: {exc}")
            if not isinstance(exc, Exception):  # Ctrl-C: nothing more is sent
                self._inflight.clear()
                raise
            self._count_loss(f"{type(exc).__name__}: {exc}")
            self._resend_window()
            raise
        self._lost_in_a_row = 0
        if not reply["ok"]:
            raise _remote_exception(reply)
        self._current = {str(k): float(v) for k, v in (reply.get("stats") or {}).items()}
        raw = reply.get("predictions")
        if flight.msg["op"] == "predict":
            raw = [raw]
        if not isinstance(raw, list) or len(raw) != len(flight.sizes) or any(
                not isinstance(r, list) or len(r) != n or not all(isinstance(p, dict) for p in r) for r, n in zip(raw, flight.sizes)):
            raise RuntimeError(f"the worker returned a malformed predictions list for {sum(flight.sizes)} samples")
        try:
            return [[Prediction.from_json(p) for p in r] for r in raw]
        except (KeyError, TypeError, ValueError) as exc:  # e.g. an instance without a score
            raise RuntimeError(f"the worker returned a malformed prediction ({type(exc).__name__}: {exc})") from exc

    def _resend_window(self) -> None:
        """Send the batches still in flight (never started by the lost worker) to a fresh one."""
        waiting = list(self._inflight)
        self._inflight.clear()
        for flight in waiting:
            if flight.lost is None:
                self._send_flight(flight)
            else:
                self._inflight.append(flight)

    def cancel(self) -> None:
        """Forget the batches in flight (the caller stopped early): the worker, busy with them, is replaced."""
        if self._inflight:
            self._inflight.clear()
            self._discard(kill=True, note="stopped with requests in flight")

    def stats(self) -> dict[str, float]:
        channel = self._channel[0]
        if channel is not None and channel.alive() and not self._inflight:  # mid-window, the last reply's counters serve
            try:
                reply = channel.request({"op": "stats"})
                if reply["ok"]:
                    self._current = {str(k): float(v) for k, v in reply["stats"].items()}
            except Lost:
                self._discard(kill=True, note="lost while asked for its counters")
        return {**merge_counters(self._carried, self._current), "worker_restarts": float(self.restarts)}

    def close(self) -> None:
        """Stop the worker (it frees its memory, GPU included); a later predict starts a new one."""
        self._discard(kill=False, note="closed")

    # -- the worker's life -----------------------------------------------------------------

    def _argv(self) -> list[str]:
        return [self.python, "-m", "harness.run.worker"]

    def _note(self, text: str) -> None:
        fh = self._log[0]
        if fh is not None:
            fh.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n".encode())

    def _start(self, why: str) -> dict[str, Any]:
        """Spawn, greet, and (when the model was loaded before) load; the hello reply."""
        self._note(f"{why}: {' '.join(self._argv())}")
        try:
            channel = Channel(self._argv(), self._env, self._log[0])
        except OSError as exc:
            raise WorkerError(f"{self.label}: cannot start {self.python}: {exc}") from exc
        self._channel[0] = channel
        try:
            hello = channel.request({"op": "hello", "protocol": PROTOCOL, "adapter": self.spec, "options": self.options})
        except Lost as exc:
            code = None if exc.garbage else channel.exit_code_after_loss()
            self._discard(kill=True, note="failed to start")
            tail = self._tail()
            hint = ("\n  the engine is not installed there: `pip install -e <harness checkout>` in it, or use `harness env create`"
                    if "No module named 'harness'" in tail else "")
            raise WorkerError(f"{self.label}: the worker ({self.python}) did not start: {exc} ({exit_text(code)}){tail}{hint}") from None
        if not hello["ok"]:
            self._discard(kill=False, note="refused hello")
            raise WorkerError(f"{self.label}: the worker ({self.python}) refused adapter {self.spec!r}: {hello.get('error')}")
        if self._device is not None:
            self._load(channel)
        return hello

    def _load(self, channel: Channel) -> None:
        try:
            reply = channel.request({"op": "load", "device": self._device})
        except Lost as exc:
            code = channel.exit_code_after_loss()
            self._discard(kill=True, note="lost while loading")
            raise WorkerError(f"{self.label}: the worker died while loading the model: {exc} ({exit_text(code)}){self._tail()}") from None
        if not reply["ok"]:
            raise WorkerError(f"{self.label}: loading failed in the worker: {reply.get('type')}: {reply.get('error')}{self._tail()}")
        self._runtime = reply.get("runtime") or self._runtime

    def _discard(self, kill: bool, note: str) -> int | None:
        """Forget the current process, keeping the counters it reported."""
        channel, self._channel[0] = self._channel[0], None
        self._carried, self._current = merge_counters(self._carried, self._current), {}
        if channel is None:
            return None
        code = channel.close(kill=kill)
        self._note(f"worker {channel.proc.pid} ended ({exit_text(code)}): {note}")
        return code

    def _lose(self, exc: Exception, image_path: str | None) -> str:
        """The worker died on the batch of ``image_path`` (None: between requests, on no batch): the
        reason recorded for that batch's samples."""
        channel = self._channel[0]
        if image_path is None:
            code = None if channel is None else channel.exit_code_after_loss()
            reason = f"worker lost ({exit_text(code)}) after answering every request it was sent: {exc}"
        elif isinstance(exc, WorkerError):
            reason = f"worker could not be restarted on image {image_path}: {exc}"
        else:
            garbage = isinstance(exc, Lost) and exc.garbage
            code = None if channel is None or garbage else channel.exit_code_after_loss()
            reason = (f"worker failed on image {image_path}: {exc}; it was killed" if garbage
                      else f"worker crashed ({exit_text(code)}) on image {image_path}")
        self._discard(kill=True, note=reason)
        if self.log_path is not None:
            reason += f"; log: {self.log_path}"
        self._count_loss(reason)
        return reason

    def _count_loss(self, reason: str) -> None:
        """Every loss means a replacement at the next batch; too many in a row end the run."""
        self._lost_in_a_row += 1
        if self._lost_in_a_row > self.max_restarts:
            raise WorkerAbort(f"{self.label}: the worker was lost {self._lost_in_a_row} times in a row (last: {reason}); "
                              "stopping. Finished samples are kept: fix the cause and run the same command to resume.")
        self.restarts += 1

    def _tail(self, lines: int = 8) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "; see the worker's stderr above"
        with self.log_path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            text = fh.read().decode(errors="replace").splitlines()
        tail = [t for t in text if t.strip() and not t.startswith("=== ")][-lines:]
        return f"; log {self.log_path}:\n    " + "\n    ".join(tail) if tail else f"; log: {self.log_path}"


# -- what the runner calls ---------------------------------------------------------------------


@dataclass(frozen=True)
class Isolation:
    """Where an isolated model runs: the interpreter, extra environment variables, the env's name."""

    python: str
    env_vars: dict[str, str]
    env_name: str | None = None


def _interpreter(python: str, where: str) -> str:
    # Never resolve symlinks: a venv's bin/python is a symlink to the base interpreter, and
    # resolving it would silently leave the environment.
    found = shutil.which(python) if os.sep not in python else os.path.abspath(os.path.expanduser(python))
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        raise WorkerError(f"{where}: interpreter {python!r} does not exist or is not executable")
    return found


def isolation_for(spec: ModelSpec) -> Isolation | None:
    """Where a model runs: ``python:``, then ``env:`` (``local`` = in-process), then a managed
    environment that provides its adapter; None = in-process."""
    from harness.registry import split_model_name
    from harness.run import envs

    python, env = getattr(spec, "python", None), getattr(spec, "env", None)
    if python:
        return Isolation(_interpreter(python, f"model {spec.name!r} python:"), {})
    if env == envs.LOCAL:
        return None
    record = envs.get_env(env) if env else envs.env_for_adapter(split_model_name(spec.adapter)[0])
    if record is None:
        return None
    python = _interpreter(record.python, f"model {spec.name!r}, environment {record.name!r}")
    return Isolation(python, envs.worker_env_vars(record), record.name)


def make_adapter(spec: ModelSpec, run_dir: Path | None = None, log_suffix: str | None = None) -> Adapter:
    """The runner's factory: an in-process adapter, or a RemoteAdapter whose stderr goes to
    ``run_dir/<model>/worker[.<log_suffix>].log`` (a shard passes its suffix)."""
    from harness.registry import create_adapter

    where = isolation_for(spec)
    if where is None:
        return create_adapter(spec.adapter, spec.options)
    log = run_dir / spec.name / (f"worker.{log_suffix}.log" if log_suffix else "worker.log") if run_dir is not None else None
    return RemoteAdapter(spec.adapter, spec.options, where.python, label=spec.name, env_vars=where.env_vars, log_path=log,
                         env_name=where.env_name)


def collect_stats(adapter: Adapter) -> dict[str, float]:
    """An adapter's efficiency counters for the manifest; never raises.

    In-process: the adapter's own counters plus this process's peak CUDA memory (shared by
    every in-process model). Isolated: the worker adds ``samples``, ``batches``, ``images``,
    ``predict_seconds`` and its own ``peak_gpu_memory_bytes``, and ``worker_restarts``.
    """
    try:
        counters = {str(k): float(v) for k, v in adapter.stats().items()}
    except Exception as exc:
        print(f"warning: {adapter.info.name}: stats() failed: {exc}", file=sys.stderr)
        counters = {}
    if not isinstance(adapter, RemoteAdapter):
        peak = peak_gpu_memory()
        if peak is not None:
            counters.setdefault("peak_gpu_memory_bytes", peak)
    return counters


