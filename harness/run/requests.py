"""The worker's side of the pipe: reading requests one ahead of the one being answered.

Kept apart from harness.run.worker (which answers requests) so that the framing, and the
decoding of the next request's images while the model runs, are one small module.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable
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


_DECODED = " decoded"  # a request key no JSON caller means: the reader's pre-decoded images, {path: (key, Decoded)}


def _image_key(path: str, exif: str = "ignore") -> str:
    """Which decode of a file: its path, modification time and the suite's image convention."""
    return f"{path}\0{os.stat(path).st_mtime_ns}\0{exif}" if os.path.exists(path) else path


class Reader:
    """Takes requests off the pipe in a thread, one ahead of the one being answered, and decodes
    a predict request's images on the way, so the next batch's pixels are ready when the model is.

    Yields parsed requests (or the exception reading or parsing one raised) in order; None at EOF.
    Decoding ahead is an optimisation only: a failure is left for the request's own decode to meet.
    """

    def __init__(self, inp: IO[bytes], max_bytes: int, ahead: int = 1) -> None:
        self._inp, self._max = inp, max_bytes
        # Set once the served adapter is known (``Adapter.prepares_images``): its CPU work per image, done here too.
        self.prepare: Callable[[np.ndarray], np.ndarray] | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self._last: str | None = None
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
                if req["op"] in ("predict", "predict_many"):
                    req[_DECODED] = self._decode_ahead(req)
                self._queue.put(req)
                if req["op"] == "shutdown":
                    return
            except Exception as exc:
                self._queue.put(exc)
            except BaseException:  # the interpreter is going down
                self._queue.put(None)
                return

    def _decode_ahead(self, req: dict[str, Any]) -> dict[str, Any]:
        items = req.get("items") if req["op"] == "predict_many" else [req]
        exif = req.get("exif", "ignore")
        out: dict[str, Any] = {}
        if exif not in EXIF_CHOICES:  # refused by the request's own handling
            return out
        for item in items if isinstance(items, list) else []:
            path = item.get("image") if isinstance(item, dict) else None
            if not isinstance(path, str) or not path or path in out:
                continue
            try:
                key = _image_key(path, exif)
                if key != self._last:  # the same image as the previous request's last: the worker still holds it
                    # Decoded here, copied out to its array in the answering thread (harness.data.images.Decoded).
                    d = decode(path, exif)
                    prepare = self.prepare
                    out[path] = (key, d if prepare is None else prepare(d.array()))
                self._last = key
            except Exception:
                self._last = None
        return out

    def next(self) -> Any:
        return self._queue.get()
