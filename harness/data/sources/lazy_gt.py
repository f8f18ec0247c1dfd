"""Ground truths read from the index cache on demand, so a split's samples hold no RLE counts.

At 100k samples the counts of every ground truth were most of what a run or a report kept
resident, yet each is needed only when its sample is scored (or drawn in the report's gallery).
A cached split (``index_cache``, format 2) keeps each ground truth's counts on a line of its own;
a ``LazyGroundTruth`` knows the line's place, its height, width and area (what the slices read),
and reads the line when its mask, box, ignore, overlap or instances are first asked for. Nothing is kept
after that beyond a few recent lines (the sentences of one object are consecutive and share one
ground truth), so memory stays flat however many samples are scored.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, cast

from harness.errors import HarnessError
from harness.types import RLE, Box, GroundTruth

_RECENT = 64  # lines kept decoded: more than the sentences of any one object
# (mask, box, ignore, overlap, instances) of one ground truth
Fields = tuple[RLE, Box | None, RLE | None, RLE | None, tuple[tuple[RLE, ...], ...] | None]


class GroundTruthStore:
    """The ground-truth section of one cache file, read by offset (``os.pread``: no shared position)."""

    def __init__(self, path: Path, fd: int, start: int, offsets: list[int]) -> None:
        self.path = path
        self._fd = fd
        self._start = start
        self._offsets = offsets  # len(gts) + 1 offsets into the section
        self._recent: OrderedDict[int, Fields] = OrderedDict()
        self._lock = threading.Lock()
        weakref.finalize(self, os.close, fd)  # the open file lives as long as some sample can ask for its mask

    def fields(self, i: int, size: list[int]) -> Fields:
        """(mask, box, ignore, overlap, instances) of ground truth ``i``."""
        with self._lock:
            got = self._recent.get(i)
            if got is not None:
                self._recent.move_to_end(i)
                return got
        lo, hi = self._offsets[i], self._offsets[i + 1]
        raw = os.pread(self._fd, hi - lo, self._start + lo)
        try:
            # A fifth element only where the ground truth has instances (index_cache.save_index).
            counts, box, ign, ovl, *more = json.loads(raw)
            instances = tuple(tuple({"size": size, "counts": c} for c in annotator) for annotator in more[0]) if more else None
        except (ValueError, TypeError) as exc:
            raise HarnessError(f"{self.path}: ground truth {i} of this index cache file is unreadable ({exc}); "
                               "the file changed while in use: delete it and run again") from None
        read = cast(Fields, ({"size": size, "counts": counts}, tuple(box) if box is not None else None,
                             {"size": size, "counts": ign} if ign is not None else None,
                             {"size": size, "counts": ovl} if ovl is not None else None, instances))
        with self._lock:
            self._recent[i] = read
            if len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
        return read


class LazyGroundTruth(GroundTruth):
    """A ``GroundTruth`` whose fields are read from its store when first used (each time after the
    store has forgotten them). Height, width and area are known without reading the mask.
    Equal to an eager ``GroundTruth`` with the same fields; pickled as one."""

    __slots__ = ("_area", "_i", "_size", "_store")
    _store: GroundTruthStore
    _i: int
    _size: list[int]
    _area: int

    def __init__(self, store: GroundTruthStore, i: int, height: int, width: int, area: int) -> None:
        # The parent's slots stay unset: the properties below stand in for them.
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_i", i)
        object.__setattr__(self, "_size", [height, width])
        object.__setattr__(self, "_area", area)

    def _fields(self) -> Fields:
        return self._store.fields(self._i, self._size)

    @property  # type: ignore[override]
    def mask(self) -> RLE:
        return self._fields()[0]

    @property  # type: ignore[override]
    def box(self) -> Box | None:
        return self._fields()[1]

    @property  # type: ignore[override]
    def ignore(self) -> RLE | None:
        return self._fields()[2]

    @property  # type: ignore[override]
    def overlap(self) -> RLE | None:
        return self._fields()[3]

    @property  # type: ignore[override]
    def instances(self) -> tuple[tuple[RLE, ...], ...] | None:
        return self._fields()[4]

    @property
    def height(self) -> int:
        return int(self._size[0])

    @property
    def width(self) -> int:
        return int(self._size[1])

    @property
    def area(self) -> int:
        return self._area

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GroundTruth):
            return NotImplemented
        return self._fields() == (other.mask, other.box, other.ignore, other.overlap, other.instances)

    __hash__ = None  # type: ignore[assignment]  # as GroundTruth's: its RLE dicts are unhashable

    def __repr__(self) -> str:
        return f"LazyGroundTruth({self._store.path.name}#{self._i}, {self.height}x{self.width}, area={self._area})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (GroundTruth, self._fields())
