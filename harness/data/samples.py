"""A suite's samples: the source its format names, built over the data root and the cache."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.data.sources import Source, SourceError, source_class
from harness.data.suites import Suite, builtin_suites
from harness.types import Sample


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness")).expanduser()


def make_source(suite: Suite, data_root: Path | None, own: bool = False) -> Source:
    """The reader of the suite's data under ``data_root``: the suite's own, or the reader of the copy that
    ``harness data fetch`` downloads (the suite's ``fetch.source``) when none of the suite's own files is
    there and that copy is. ``own``: the suite's own reader regardless (``harness data layout``)."""
    source = _reader(suite, suite.source_format, suite.source_params, data_root)
    fetched = suite.fetch.source if suite.fetch is not None else None
    if own or fetched is None or data_root is None or _holds_any(source, suite):
        return source
    copy = _reader(suite, str(fetched["format"]), {k: v for k, v in fetched.items() if k != "format"}, data_root)
    return copy if _holds_any(copy, suite) else source


def _reader(suite: Suite, fmt: str, params: dict[str, object], data_root: Path | None) -> Source:
    source = source_class(fmt)(params, suite.conventions, data_root, cache_dir())
    name = suite.name if builtin_suites().get(suite.name) == suite.path else str(suite.path)
    if suite.fetch is not None and suite.fetch.downloads:
        what = "a faithful copy that the suite reads in their place" if suite.fetch.source is not None else "it"
        source.way_forward = f"`harness data fetch {name}` downloads {what}; `harness data layout {name}` shows the layout"
    else:
        source.way_forward = f"see `harness data layout {name}`"
    return source


def holds_own_files(suite: Suite, data_root: Path) -> bool:
    """Whether any of the suite's own annotation files is under ``data_root`` (then a run reads them, not a fetched copy)."""
    return _holds_any(_reader(suite, suite.source_format, suite.source_params, data_root), suite)


def _holds_any(source: Source, suite: Suite) -> bool:
    """Whether any annotation file of any of the suite's splits is on disk for this reader."""
    files = getattr(source, "annotation_files", None)
    if files is None:
        return True
    for split in suite.splits:
        try:
            if any(f.is_file() for f in files(split)):
                return True
        except SourceError:  # a glob that matches nothing yet
            continue
    return False


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
