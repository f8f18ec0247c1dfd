"""The common frame of every reader of data on disk: per-split parameters, layout, index cache.

A suite's ``source`` mapping holds the reader's parameters; a ``splits`` mapping inside it
gives each suite split its own overrides (which dataset, which splitBy, which folder)::

    source:
      format: refer
      text: raw
      splits:
        refcoco_val:  {dataset: refcoco,  split_by: unc, split: val}
        refcocog_test: {dataset: refcocog, split_by: umd, split: test}

so one Source serves every split of the suite and the runner stays unchanged. A split
missing from ``splits`` uses the top-level parameters with ``split`` = its own name.

Every reader declares the files it needs (``annotation_files``), the layout it expects
(``expected``, for ``harness data layout``) and builds samples (``build``); ``samples``
adds the on-disk index cache (``index_cache``) around ``build``.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.data.conventions import Conventions
from harness.data.sources import Source, SourceError
from harness.data.sources.index_cache import FileHasher, content_digest, index_key, index_path, load_index, save_index
from harness.types import Sample


@dataclass(frozen=True)
class Expected:
    """One entry of a dataset's expected layout, relative to the data root."""

    path: str  # posix, relative to the data root
    what: str  # what the file or folder holds
    published: str  # where to get it
    kind: str = "file"  # file | dir


class DataWarning(UserWarning):
    """A copy of a dataset that cannot reproduce the reference ground truth, or mixes splits."""


class FileSource(Source):
    """A Source over files under the data root, with per-split parameters and an index cache."""

    FORMAT: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1  # bump when parsing changes: it is part of the cache key
    DEFAULTS: ClassVar[dict[str, Any]] = {}  # every accepted parameter with its default
    # the sample units (Conventions.sample_unit) the reader enumerates; another is refused, never read as one of these
    SAMPLE_UNITS: ClassVar[tuple[str, ...]] = ("sentence", "first_text", "object")

    def __init__(self, params: dict[str, Any], conventions: Conventions, data_root: Path | None, cache_dir: Path) -> None:
        super().__init__(dict(params), conventions, Path(data_root).expanduser().absolute() if data_root else None,
                         Path(cache_dir).expanduser().absolute())
        if conventions.sample_unit not in self.SAMPLE_UNITS:
            raise SourceError(f"format {self.FORMAT!r} has no sample unit {conventions.sample_unit!r} "
                              f"(it reads {', '.join(self.SAMPLE_UNITS)})")
        known = set(self.DEFAULTS) | {"splits"}
        self._check_keys(self.params, known, f"source parameters of format {self.FORMAT!r}")
        splits = self.params.get("splits") or {}
        if not isinstance(splits, dict) or any(not isinstance(v, dict) for v in splits.values()):
            raise SourceError(f"source.splits of format {self.FORMAT!r} must map split names to parameter mappings")
        for name, spec in splits.items():
            self._check_keys(spec, set(self.DEFAULTS), f"source.splits.{name} of format {self.FORMAT!r}")
        self._memo: dict[str, list[Sample]] = {}
        self.current_key = ""  # the cache key of the split being built (names folders of extracted images)

    @staticmethod
    def _check_keys(data: dict[str, Any], known: set[str], where: str) -> None:
        unknown = sorted(set(data) - known)
        if unknown:
            raise SourceError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")

    # -- parameters --------------------------------------------------------------------------

    def spec(self, split: str) -> dict[str, Any]:
        """The parameters of ``split``: defaults, then the source's, then the split's own."""
        top = {k: v for k, v in self.params.items() if k != "splits"}
        per_split = (self.params.get("splits") or {}).get(split)
        if self.params.get("splits") and per_split is None:
            raise SourceError(f"split {split!r} has no entry in source.splits (known: {', '.join(self.params['splits'])})")
        spec = {**self.DEFAULTS, **top, **(per_split or {})}
        if "split" in self.DEFAULTS and spec.get("split") in (None, ""):
            spec["split"] = split
        return spec

    @property
    def root(self) -> Path:
        if self.data_root is None:
            raise SourceError(f"the {self.FORMAT!r} data needs a data root: pass --data-root DIR, set data_root in the run "
                              f"config, or set HARNESS_DATA ({self.way_forward})")
        return self.data_root

    def path(self, rel: str | Path) -> Path:
        """A path of the layout: relative ones are under the data root, absolute ones stay."""
        p = Path(rel).expanduser()
        return p if p.is_absolute() else self.root / p

    # -- what a reader implements ------------------------------------------------------------

    @abstractmethod
    def annotation_files(self, split: str) -> list[Path]:
        """Files whose content defines the split's samples (hashed for the cache key)."""

    @abstractmethod
    def expected(self, split: str) -> list[Expected]:
        """The layout this split needs under the data root, with where each part is published."""

    @abstractmethod
    def build(self, split: str, spec: dict[str, Any]) -> tuple[list[Sample], list[str]]:
        """Parse the split: its samples and any warnings about the copy's faithfulness."""

    def cache_spec(self, split: str, spec: dict[str, Any]) -> dict[str, Any]:
        """What besides the files' content decides the samples (part of the cache key)."""
        return {"split": split, "spec": spec, "sample_unit": self.conventions.sample_unit}

    # -- the public entry point --------------------------------------------------------------

    def _file_digests(self, split: str) -> tuple[dict[str, Any], list[Path], list[str]]:
        """The split's parameters, its annotation files and their sha256 (memoised: a stat per file)."""
        spec = self.spec(split)
        files = self.annotation_files(split)
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise SourceError(f"{self.FORMAT} split {split!r}: missing file(s): {', '.join(missing[:5])}"
                              + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                              + f" ({self.way_forward})")
        hasher = FileHasher(self.cache_dir)
        digests = [hasher.digest(f) for f in files]
        hasher.save()
        return spec, files, digests

    def data_digest(self, split: str) -> str:
        """What the split's samples come from (reader, version, parameters, annotation files' content),
        without parsing anything: the index-cache key less the cache's format."""
        spec, _, digests = self._file_digests(split)
        return content_digest(self.FORMAT, self.VERSION, self.cache_spec(split, spec), digests)

    def samples(self, split: str) -> list[Sample]:
        if split not in self._memo:
            spec, files, digests = self._file_digests(split)
            key = index_key(self.FORMAT, self.VERSION, self.cache_spec(split, spec), digests)
            where = index_path(self.cache_dir, self.FORMAT, key)
            cached = load_index(where, key, self.data_root, self.cache_dir)
            if cached is None:
                self.current_key = key
                built, notes = self.build(split, spec)
                seen: set[str] = set()
                dupes = [s.id for s in built if s.id in seen or seen.add(s.id)]  # type: ignore[func-returns-value]
                if dupes:
                    raise SourceError(f"{self.FORMAT} split {split!r} ({files[0]}): duplicate sample id(s) {', '.join(dupes[:3])}")
                # Read back as a later run reads it (ground truths on demand), so the first run holds
                # no more than the next; kept as built only where the cache cannot be written.
                saved = save_index(where, key, built, self.data_root, self.cache_dir, notes)
                cached = (load_index(where, key, self.data_root, self.cache_dir) if saved else None) or (built, notes)
            samples, notes = cached
            for note in notes:
                warnings.warn(note, DataWarning, stacklevel=2)
            self._memo[split] = samples
        return list(self._memo[split])
