"""A suite's samples: the source its format names, built over the data root and the cache."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.data.sources import Source, source_class
from harness.data.suites import Suite
from harness.types import Sample


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness")).expanduser()


def make_source(suite: Suite, data_root: Path | None) -> Source:
    return source_class(suite.source_format)(suite.source_params, suite.conventions, data_root, cache_dir())


def data_digests(suite: Suite, splits: Sequence[str], data_root: Path | None) -> dict[str, str]:
    """Each split's data digest (``Source.data_digest``): what its samples and ground truth come from,
    computed without loading them."""
    source = make_source(suite, data_root)
    return {split: source.data_digest(split) for split in splits}


def load_samples(suite: Suite, splits: Sequence[str], data_root: Path | None, limit: int | None = None,
                 sizes: dict[str, int] | None = None, counts: dict[str, dict[str, int]] | None = None) -> dict[str, list[Sample]]:
    """Each split's samples, the first ``limit`` of each; ``sizes``, when given, receives each split's
    full size (what a ``--limit`` run is a part of), and ``counts`` its images, objects and expressions
    (``split_counts``, of the whole split: what is held up against the suite's official counts)."""
    source = make_source(suite, data_root)
    out = {}
    for split in splits:
        samples = source.samples(split)
        if sizes is not None:
            sizes[split] = len(samples)
        if counts is not None:
            counts[split] = split_counts(samples)
        out[split] = samples[:limit] if limit else samples
    return out


def split_counts(samples: Sequence[Sample]) -> dict[str, int]:
    """Images, objects (distinct ``meta["object"]``) and expressions (samples) of a split."""
    return {
        "images": len({s.image for s in samples}),
        "objects": len({(s.image, str(s.meta.get("object", s.id))) for s in samples}),
        "expressions": len(samples),
    }
