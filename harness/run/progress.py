"""Progress where there is no terminal (a Slurm job, CI): a plain line every 30 s and at the end.

tqdm draws the bar on a terminal and draws nothing elsewhere; this fills that gap with lines a
log file keeps: model, split, done/total, samples/s over this command's predictions, and ETA.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

INTERVAL_S = 30.0


def _eta(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class LineProgress:
    """Prints only when ``stream`` is not a TTY (``enabled`` says which)."""

    def __init__(self, model: str, split: str, total: int, initial: int, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, interval: float = INTERVAL_S) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = not (isatty is not None and isatty())
        self.model, self.split, self.total, self.initial = model, split, total, initial
        self.done = initial
        self.clock, self.interval = clock, interval
        self.start = self.last = clock()

    def line(self) -> str:
        elapsed = self.clock() - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        eta = _eta((self.total - self.done) / rate) if rate > 0 else "?"
        return f"{self.model} {self.split}: {self.done}/{self.total} samples, {rate:.2f} samples/s, ETA {eta}"

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.enabled and self.clock() - self.last >= self.interval:
            self.last = self.clock()
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """The end of the split: always one line (when enabled), so a log shows every split finished."""
        if self.enabled:
            print(self.line(), file=self.stream, flush=True)
