"""Recompute a log's scores from its stored predictions and the suite's ground truth.

The stored ``score`` of each line is compared with the one the running code derives from the
line's ``prediction``; a line whose score disagrees (a scoring fix, a hand edit, a bug) is
listed with its sample id and the fields that differ, and the log is rewritten with the
derived scores in one atomic rename, so a kill leaves either the old log or the new one.
Only the small scores are held in memory, never the masks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.conventions import Conventions
from harness.files import write_lines_atomic
from harness.records import logline
from harness.records.rederive import derive_score
from harness.records.store import iter_records
from harness.types import Sample


@dataclass(frozen=True)
class ChangedScore:
    """A stored score that is not what its stored mask scores: field -> (stored, derived)."""

    path: Path
    record: int  # 1-based position among the log's records
    id: str
    fields: dict[str, tuple[Any, Any]]

    def describe(self) -> str:
        diffs = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in self.fields.items())
        return f"{self.path} record {self.record}, sample {self.id}: {diffs}"


@dataclass
class LogRescore:
    path: Path
    n: int = 0
    changed: list[ChangedScore] = field(default_factory=list)


def rescore_log(path: Path, samples: Mapping[str, Sample], conv: Conventions) -> LogRescore:
    """Derive every record's score; rewrite the log (atomically) only when some stored score differs."""
    out = LogRescore(path)
    derived: list[dict[str, Any]] = []
    for k, rec in enumerate(iter_records(path), 1):
        new = derive_score(f"{path} record {k}", rec, samples, conv)
        old = rec.get("score")
        if old != new:
            old_d = old if isinstance(old, dict) else {}
            diffs = {f: (old_d.get(f), v) for f, v in new.items() if old_d.get(f) != v}
            diffs.update({f: (v, None) for f, v in old_d.items() if f not in new})
            out.changed.append(ChangedScore(path, k, str(rec["id"]), diffs or {"score": (old, new)}))
        derived.append(new)
    out.n = len(derived)
    if out.changed:
        write_lines_atomic(path, _rewritten(path, derived))
    return out


def _rewritten(path: Path, derived: list[dict[str, Any]]) -> Iterator[str]:
    """The log's records again, each with its derived score, in the runner's line format."""
    for rec, score in zip(iter_records(path), derived, strict=True):
        yield logline.encode(logline.with_score(rec, score)).decode("utf-8")
