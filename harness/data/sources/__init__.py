"""Sources turn a suite's data on disk (or a generator) into Samples, one split at a time.

Each source format lives in its own module and is named in a suite's ``source.format``;
the table below maps formats to ``module:Class`` so nothing is imported until used.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from harness.data.conventions import Conventions
from harness.errors import HarnessError
from harness.types import Sample

SOURCE_FORMATS: dict[str, str] = {
    "shapes": "harness.data.sources.shapes:ShapesSource",
    "refer": "harness.data.sources.refer:ReferSource",
    "reasonseg": "harness.data.sources.reasonseg:ReasonSegSource",
    "gseval": "harness.data.sources.gseval:GSEvalSource",
    "grefcoco": "harness.data.sources.grefcoco:GRefCocoSource",
    "refcoco_m": "harness.data.sources.refcoco_m:RefCocoMSource",
    "mmr": "harness.data.sources.mmr:MMRSource",
    "hf": "harness.data.sources.hf:HFSource",
    "saco": "harness.data.sources.saco:SacoSource",
}


class SourceError(HarnessError):
    """Data that cannot be read: names the file and what is wrong with it."""


class Source(ABC):
    """Enumerates the samples of one split, in a stable order.

    ``params`` is the suite's ``source`` mapping (minus ``format``); ``data_root`` is where
    the user keeps the data (None for generated sources); ``cache_dir`` is a writable
    directory for derived files (generated images, parsed indexes).
    """

    # What an error about missing data tells the user to do; the suite sets it (harness.data.samples.make_source),
    # naming `harness data fetch SUITE` where that command can download the data.
    way_forward = "see `harness data layout <suite>`"

    def __init__(self, params: dict[str, Any], conventions: Conventions, data_root: Path | None, cache_dir: Path) -> None:
        self.params = params
        self.conventions = conventions
        self.data_root = data_root
        self.cache_dir = cache_dir

    @abstractmethod
    def samples(self, split: str) -> list[Sample]:
        """All samples of ``split`` in a stable order."""

    def data_digest(self, split: str) -> str:
        """A digest of what ``split``'s samples and ground truth are made from: equal digests, equal samples.

        A run records it per split when it scores the split, so scores computed against other
        ground truth are refused. Readers override it with something cheaper than parsing (the
        index-cache key, the generator's parameters); this fallback hashes the samples themselves.
        """
        h = hashlib.sha256(f"samples\n{type(self).__name__}\n{split}".encode())
        for s in self.samples(split):
            g = s.gt
            h.update(json.dumps([s.id, s.image, s.expression, s.no_target, g.mask, g.box, g.ignore, g.overlap],
                                sort_keys=True, default=str).encode())
        return f"samples:{h.hexdigest()[:32]}"


def source_class(fmt: str) -> type[Source]:
    if fmt not in SOURCE_FORMATS:
        raise SourceError(f"unknown source format {fmt!r}; known: {', '.join(sorted(SOURCE_FORMATS))}")
    module, _, attr = SOURCE_FORMATS[fmt].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls  # type: ignore[no-any-return]
