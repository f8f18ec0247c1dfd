"""The pipe to one worker process: framing, request ids, and telling a dead worker from a rude one.

Kept apart from RemoteAdapter (harness.run.remote), which decides what a lost worker means for
the run; this module only reports that it was lost and how.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

import numpy as np

from harness.run.worker import MAX_LINE_BYTES


class Lost(Exception):
    """The worker process is gone (EOF, broken pipe) or unusable (``garbage`` on stdout)."""

    def __init__(self, reason: str, garbage: bool = False) -> None:
        super().__init__(reason)
        self.garbage = garbage


class RequestTooLarge(ValueError):
    """A request over the protocol's line limit; refused before anything is written."""


def exit_text(code: int | None) -> str:
    if code is None:
        return "still running; killed"
    if code < 0:
        try:
            return f"exit code {code}, {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"


class Channel:
    """One worker process: its pipes, the request counter, the reply buffer."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: IO[bytes] | None) -> None:
        # OSError (no such interpreter) propagates: the caller words it.
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=dict(env), bufsize=0)
        self._buf = bytearray()
        self._next = 0

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        return self.receive(self.send(msg))

    def check_size(self, msg: dict[str, Any]) -> bytes:
        """The request's line, or RequestTooLarge when it is over the protocol's limit."""
        data = json.dumps({**msg, "id": self._next + 1}, default=json_default).encode() + b"\n"
        if len(data) > MAX_LINE_BYTES:
            raise RequestTooLarge(f"request of {len(data)} bytes exceeds the protocol's {MAX_LINE_BYTES}-byte limit")
        return data

    def send(self, msg: dict[str, Any]) -> int:
        """Write one request without waiting for its answer (pipelining); its id, for ``receive``."""
        data = self.check_size(msg)
        self._next += 1
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except OSError as exc:  # BrokenPipeError: it died before or while reading
            raise Lost(f"the pipe broke ({exc.strerror or exc})") from None
        return self._next

    def receive(self, request_id: int) -> dict[str, Any]:
        """The next reply, which must answer ``request_id``: the worker answers in order."""
        line = self._readline()
        try:
            reply = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Lost(f"it wrote a malformed reply ({line[:80]!r})", garbage=True) from None
        if not isinstance(reply, dict) or reply.get("id") != request_id or not isinstance(reply.get("ok"), bool):
            raise Lost(f"it answered out of protocol ({line[:80]!r})", garbage=True)
        return reply

    def _readline(self) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line
            if len(self._buf) > MAX_LINE_BYTES:
                raise Lost(f"its reply exceeded {MAX_LINE_BYTES} bytes", garbage=True)
            chunk = os.read(fd, 1 << 20)  # a timeout signal's exception interrupts this wait
            if not chunk:
                raise Lost("it closed its output")
            self._buf += chunk

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, kill: bool = False, grace: float = 10.0) -> int | None:
        """End the process (EOF lets it exit cleanly; a busy or stuck one is killed); its exit code."""
        code = self.proc.poll()
        if code is None and not kill:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                code = self.proc.wait(grace)
            except (OSError, subprocess.TimeoutExpired):
                code = None
        if code is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        return code

    def exit_code_after_loss(self, wait: float = 5.0) -> int | None:
        """After EOF the process is usually exiting: give it a moment, else kill it (None)."""
        try:
            return self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.close(kill=True)
            return None


def json_default(obj: Any) -> Any:
    return obj.item() if isinstance(obj, np.generic) else str(obj)


@contextmanager
def alarm_paused() -> Iterator[None]:
    """Stop the runner's per-sample timer (ITIMER_REAL) while a worker restarts, then resume it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    remaining, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        yield
    finally:
        if remaining > 0:
            signal.setitimer(signal.ITIMER_REAL, remaining, interval)
