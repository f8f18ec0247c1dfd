"""``harness data check`` and ``harness data layout``: is the data on disk what the suite expects?

``data layout SUITE`` prints the tree a suite's reader expects under the data root and where
each part is published. ``data check --suite SUITE`` reads every split the way a run does
and reports, with file names: missing or malformed annotation files, images that are
missing, do not decode or do not match their ground truth's size, and per-split counts
(images, objects, expressions) that differ from the official counts in the suite file.
Exit status 0 when clean, 1 when anything is wrong.

The data root is ``--data-root``, else ``data_root`` of ``--config``, else ``$HARNESS_DATA``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness.data.images import ImageError, header, load_image
from harness.data.samples import make_source, split_counts
from harness.data.sources import Source
from harness.data.sources.filesource import Expected
from harness.data.suites import COUNT_KEYS, Suite, load_suite
from harness.errors import HarnessError
from harness.types import Sample

MAX_LISTED = 50  # problems printed per split; the rest are counted


@dataclass
class SplitReport:
    split: str
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def empty_targets(samples: Sequence[Sample]) -> list[str]:
    """Ids of samples the dataset says have a target whose ground-truth mask has no pixel."""
    return [s.id for s in samples if not s.no_target and s.gt.area == 0]


class ImageChecker:
    """Checks each image once per command (splits share images): exists, decodes, right size."""

    def __init__(self, decode: bool, exif: str = "ignore") -> None:
        self.decode = decode
        self.exif = exif  # the suite's image convention: sizes of upright images under "apply"
        self._seen: dict[str, tuple[int, int] | str] = {}

    def size(self, path: str) -> tuple[int, int] | str:
        if path not in self._seen:
            self._seen[path] = self._probe(path)
        return self._seen[path]

    def _probe(self, path: str) -> tuple[int, int] | str:
        if self.decode:
            try:
                h, w = load_image(path, self.exif).shape[:2]
                return int(h), int(w)
            except ImageError as exc:
                return str(exc)
        try:
            h, w, _ = header(path, self.exif)
        except ImageError as exc:
            return str(exc)
        return h, w

    def check(self, samples: Sequence[Sample], split: str) -> list[str]:
        by_image: dict[str, list[Sample]] = {}
        for s in samples:
            by_image.setdefault(s.image, []).append(s)
        problems = []
        for path, group in tqdm(by_image.items(), desc=f"images {split}", unit="image", disable=None, file=sys.stderr):
            got = self.size(path)
            if isinstance(got, str):
                problems.append(got)
                continue
            wrong = [s for s in group if (s.gt.height, s.gt.width) != got]
            if wrong:
                s = wrong[0]
                problems.append(f"image {path} is {got[1]}x{got[0]} (w x h) but the ground truth of {len(wrong)} sample(s), "
                                f"e.g. {s.id}, is {s.gt.width}x{s.gt.height}")
        return problems


def check_split(source: Source, suite: Suite, split: str, images: ImageChecker) -> SplitReport:
    report = SplitReport(split)
    files = getattr(source, "annotation_files", None)
    if files is not None:
        try:
            missing = [f for f in files(split) if not f.is_file()]
        except HarnessError as exc:
            report.problems.append(str(exc))
            return report
        if missing:
            report.problems.extend(f"missing annotation file {f}" for f in missing)
            return report
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            samples = source.samples(split)
        except HarnessError as exc:
            report.problems.append(str(exc))
            return report
    report.notes.extend(sorted({str(w.message) for w in caught}))
    empty = empty_targets(samples)
    if empty:
        report.notes.append(f"{len(empty)} targeted sample(s) have an empty ground truth (no pixel), e.g. "
                            f"{', '.join(empty[:3])}: scored by the targeted empty-union rule "
                            f"(targeted_empty_union={suite.conventions.targeted_empty_union}), never as no-target")
    report.problems.extend(images.check(samples, split))
    report.counts = split_counts(samples)
    official = suite.splits[split].get("counts") or {}
    for key in COUNT_KEYS:
        want = official.get(key)
        if want is not None and report.counts[key] != want:
            report.problems.append(f"{key}: {report.counts[key]} found, the official count is {want}")
    return report


def run_check(suite_name: str, data_root: Path | None, splits: Sequence[str] | None, decode: bool, out: Any = None) -> int:
    out = out or sys.stdout
    suite = load_suite(suite_name)
    names = suite.select_splits(list(splits or [])) if splits else list(suite.splits)
    source = make_source(suite, data_root)
    print(f"suite {suite.name} (v{suite.version}), data root: {data_root or '(none)'}", file=out)
    if getattr(source, "FORMAT", suite.source_format) != suite.source_format:
        print(f"reading the copy `harness data fetch` downloads (format {getattr(source, 'FORMAT', '')}): none of the "
              f"suite's own {suite.source_format} files is under the data root", file=out)
    checker = ImageChecker(decode, suite.conventions.exif)
    bad = 0
    total = 0
    for split in names:
        rep = check_split(source, suite, split, checker)
        counts = ", ".join(f"{rep.counts[k]} {k}" for k in COUNT_KEYS) if rep.counts else "not read"
        status = "ok" if not rep.problems else f"{len(rep.problems)} problem(s)"
        print(f"{split}: {counts}: {status}", file=out)
        for note in rep.notes:
            print(f"  warning: {note}", file=out)
        for problem in rep.problems[:MAX_LISTED]:
            print(f"  - {problem}", file=out)
        if len(rep.problems) > MAX_LISTED:
            print(f"  ... and {len(rep.problems) - MAX_LISTED} more", file=out)
        bad += bool(rep.problems)
        total += len(rep.problems)
    if bad:
        forward = f"; `harness data fetch {suite_name}` downloads it" if suite.fetch is not None and suite.fetch.downloads else ""
        print(f"{total} problem(s) in {bad} of {len(names)} split(s); `harness data layout {suite_name}` shows the expected "
              f"layout{forward}", file=out)
        return 1
    print(f"all {len(names)} split(s) ok", file=out)
    return 0


def layout_entries(suite: Suite, source: Source) -> dict[str, tuple[Expected, list[str]]]:
    """Expected path -> (entry, splits that need it)."""
    expected = getattr(source, "expected", None)
    entries: dict[str, tuple[Expected, list[str]]] = {}
    if expected is None:
        return entries
    for split in suite.splits:
        for e in expected(split):
            entries.setdefault(e.path, (e, []))[1].append(split)
    return entries


def render_layout(suite: Suite, source: Source, data_root: Path | None) -> str:
    entries = layout_entries(suite, source)
    where = data_root or "--data-root, data_root in the config, or $HARNESS_DATA"
    lines = [f"suite {suite.name}: expected layout under the data root ({where})"]
    if not entries:
        lines.append("  (generated data: nothing to lay out)")
        return "\n".join(lines)
    printed: set[str] = set()
    order = sorted(entries, key=lambda p: p.strip("/").split("/"))
    for path in order:
        e, splits = entries[path]
        parts = [p for p in path.strip("/").split("/") if p]
        for depth in range(len(parts) - 1):
            d = "/".join(parts[: depth + 1])
            if d not in printed:
                printed.add(d)
                lines.append("  " * (depth + 1) + parts[depth] + "/")
        name = "  " * len(parts) + parts[-1] + ("/" if e.kind == "dir" else "")
        state = ""
        if data_root is not None and not any(c in path for c in "*?["):
            target = data_root / path
            present = target.is_dir() if e.kind == "dir" else target.is_file()
            state = "  [ok]" if present else "  [MISSING]"
        shown = ", ".join(splits) if len(splits) <= 3 else f"{', '.join(splits[:3])} +{len(splits) - 3}"
        lines.append(f"{name:<44} {e.what}  (splits: {shown}){state}")
    lines.append("")
    lines.append("where to get them:")
    by_source: dict[str, list[str]] = {}
    table = suite.fetch
    for path in order:
        covering = table.covering(path) if table is not None else None
        by_source.setdefault(covering.where if covering is not None else entries[path][0].published, []).append(path)
    for published, paths in by_source.items():
        lines.append(f"  {published}")
        lines.append(f"      -> {', '.join(paths)}")
    if table is not None:
        lines.append("")
        lines.append(f"`harness data fetch {suite.name}` gets:" if table.downloads else
                     f"`harness data fetch {suite.name}` names the pages (nothing here can be downloaded without a person):")
        for item in table.entries:
            state = ""
            if data_root is not None:
                state = "  [ok]" if (data_root / item.path).exists() else "  [MISSING]"
            lines.append(f"  {item.path or '.'}{state}\n      {item.what}\n      from {item.where}")
        if table.source is not None:
            lines.append(f"  (a {table.source['format']} copy, read instead of the files above when none of them is present)")
    return "\n".join(lines)
