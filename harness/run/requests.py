"""The worker's side of the pipe: requests read and made ready for the model while it runs.

Kept apart from harness.run.worker (which answers requests) so that the framing and the thread
that feeds the model are one small module. The Reader takes the next requests off the pipe,
checks them and decodes their images to arrays (and prepares them, ``Adapter.prepares_images``)
while the model runs the current one, so that what the model thread does between two calls is
write the last reply and take the next ready request off a queue.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from harness.data.images import EXIF_CHOICES, decode

if TYPE_CHECKING:
    import numpy as np


class ProtocolError(ValueError):
    """A request that does not follow the protocol; answered with an error reply."""


def read_request(inp: IO[bytes], max_bytes: int) -> bytes | None:
    """One line, at most ``max_bytes``; None at EOF. An oversized line is consumed and refused."""
    line = inp.readline(max_bytes + 1)
    if not line:
        return None
    if len(line) > max_bytes:
        while line and not line.endswith(b"\n"):
            line = inp.readline(1 << 20)
        raise ProtocolError(f"request longer than {max_bytes} bytes refused")
    return line


def _image_key(path: str, exif: str = "ignore") -> str:
    """Which decode of a file: its path, modification time and the suite's image convention."""
    return f"{path}\0{os.stat(path).st_mtime_ns}\0{exif}" if os.path.exists(path) else path


@dataclass
class Ready:
    """A predict request made ready in the reader thread: the model's arguments, (pixels, queries) per
    item, and how many of its images were decoded for it (an image the previous request ended on is
    handed over again, not decoded twice); or the failure the request is to be answered with."""

    items: list[tuple[np.ndarray, list[Any]]]
    decoded: int
    failure: Exception | None = None


PREDICT_OPS = ("predict", "predict_many")


class Reader:
    """Takes requests off the pipe in a thread, up to ``ahead`` ahead of the one being answered, and
    makes each predict request ready for the model on the way.

    ``items`` is the worker's check of a predict request: its (image path, queries) per item, or a
    ProtocolError. ``next`` returns (request, Ready or None) in order, the exception that reading or
    parsing a request raised, or None at EOF.
    """

    def __init__(self, inp: IO[bytes], max_bytes: int, items: Callable[[dict[str, Any]], list[tuple[str, list[Any]]]],
                 ahead: int = 2) -> None:
        self._inp, self._max, self._items = inp, max_bytes, items
        # Set once the served adapter is known (``Adapter.prepares_images``): its CPU work per image, done here too.
        self.prepare: Callable[[np.ndarray], np.ndarray] | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self._last: tuple[str, np.ndarray] | None = None  # the last image decoded: the next request may start on it
        threading.Thread(target=self._work, name="harness-worker-reader", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                line = read_request(self._inp, self._max)
                if line is None:
                    self._queue.put(None)
                    return
                if not line.strip():
                    continue
                try:
                    req = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise ProtocolError(f"malformed JSON: {exc}") from None
                if not isinstance(req, dict) or not isinstance(req.get("op"), str):
                    raise ProtocolError("a request is a JSON object with an 'op' string")
                self._queue.put((req, self.ready(req) if req["op"] in PREDICT_OPS else None))
                if req["op"] == "shutdown":
                    return
            except Exception as exc:
                self._queue.put(exc)
            except BaseException:  # the interpreter is going down
                self._queue.put(None)
                return

    def ready(self, req: dict[str, Any]) -> Ready:
        """The model's arguments for a predict request (what the model thread is handed), or its failure."""
        decoded = 0
        try:
            items = self._items(req)
            exif = req.get("exif", "ignore")  # the suite's image convention (harness.data.images)
            if exif not in EXIF_CHOICES:
                raise ProtocolError(f"{req['op']}: 'exif' must be one of {', '.join(EXIF_CHOICES)}, got {exif!r}")
            args = []
            for path, queries in items:
                key = _image_key(path, exif)
                if self._last is None or self._last[0] != key:  # consecutive batches of one image decode it once
                    self._last = None
                    # Copied out here too, not in the model's thread (harness.data.images.Decoded prefers the
                    # consumer's thread for its heap): there it was model time, a fraction of a ms an image.
                    image = decode(path, exif).array()  # an ImageError fails the request, named
                    prepare = self.prepare
                    self._last = (key, image if prepare is None else prepare(image))
                    decoded += 1
                args.append((self._last[1], queries))
        except Exception as exc:
            return Ready([], decoded, exc)
        return Ready(args, decoded)

    def next(self) -> Any:
        return self._queue.get()
