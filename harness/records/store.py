"""The run directory: append-only prediction logs, the manifest, results.json.

    RUN/manifest.json           config, fingerprints, versions, git commit, status per model x split
    RUN/<model>/<split>.jsonl   one line per sample: id, expression, prediction (RLE), score
    RUN/results.json            metrics per model x split (schema in harness/score/schema.py)
    RUN/report/index.html       the rendered report

Lines are flushed as they are written, so a killed run loses at most the line being
written; on resume a truncated last line is cut off and every complete line is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from harness.errors import HarnessError
from harness.files import write_json_atomic


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in a split or model name."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


class StoreError(HarnessError):
    """A run directory file that cannot be read; names the file and line."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """All complete records of a JSONL log. A truncated last line is skipped (a killed run);
    a bad line anywhere else is corruption and raises, naming the file and line."""
    return [rec for rec, _ in _scan(path)]


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a log one at a time (a 20k-sample log never sits in memory whole)."""
    for rec, _ in _scan(path):
        yield rec


def _scan(path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """Yield (record, byte offset after it) for every complete line, streaming."""
    if not path.exists():
        return
    offset = 0
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            # A record is written with its newline in one call, so only a line without its
            # newline can be a write cut short by a kill: skip it (resume redoes it). A bad
            # newline-terminated line is damage, and is reported.
            if not line.endswith(b"\n"):
                return
            offset += len(line)
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise StoreError(f"{path}:{lineno}: corrupt record ({exc}); the file is damaged before its end") from exc
            if not isinstance(rec, dict):
                raise StoreError(f"{path}:{lineno}: a record must be a JSON object, got {type(rec).__name__}")
            yield rec, offset


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from exc


# One encoder for every line: json.dumps with options builds a new JSONEncoder per call.
_LINE_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class PredictionLog:
    """Append-only JSONL log of one model on one split."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: TextIO | None = None

    def done(self) -> set[str]:
        """Ids already written; cuts a truncated tail so appends start clean."""
        ids: set[str] = set()
        good_end = 0
        for rec, end in _scan(self.path):
            ids.add(str(rec["id"]))
            good_end = end
        if self.path.exists() and self.path.stat().st_size != good_end:
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)
        return ids

    def append(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(_LINE_ENCODER.encode(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class RunDir:
    """Paths of one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def results_path(self) -> Path:
        return self.root / "results.json"

    @property
    def report_path(self) -> Path:
        return self.root / "report" / "index.html"

    @property
    def writer_lock_path(self) -> Path:
        return self.root / ".writer.lock"

    @property
    def manifest_lock_path(self) -> Path:
        return self.root / ".manifest.lock"

    def log_path(self, model: str, split: str, shard_suffix: str | None = None) -> Path:
        name = f"{split}.{shard_suffix}.jsonl" if shard_suffix else f"{split}.jsonl"
        return self.root / model / name

    def log(self, model: str, split: str, shard_suffix: str | None = None) -> PredictionLog:
        return PredictionLog(self.log_path(model, split, shard_suffix))

    def shard_logs(self, model: str, split: str) -> list[Path]:
        """Per-rank logs of a split not merged yet (any world size)."""
        return sorted((self.root / model).glob(f"{glob_escape(split)}.shard-*-of-*.jsonl"))

    def records(self, model: str, split: str) -> list[dict[str, Any]]:
        return read_records(self.log_path(model, split))

    def manifest(self) -> dict[str, Any] | None:
        return read_json(self.manifest_path) if self.manifest_path.exists() else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)
