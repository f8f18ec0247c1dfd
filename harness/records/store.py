"""The run directory: append-only prediction logs, the manifest, results.json.

    RUN/manifest.json           config, fingerprints, versions, git commit, status per model x split,
                                the scoring version of each log (harness/score/version.py)
    RUN/<model>/<split>.jsonl   one line per sample: id, expression, prediction (RLE), score
    RUN/results.json            metrics per model x split (schema in harness/score/schema.py)
    RUN/report/index.html       the rendered report

A batch's lines are written and flushed together, as soon as its predictions are scored, so a
killed run loses at most the batch in flight; on resume a truncated last line is cut off and every
complete line is kept. A later line for an id supersedes an earlier one (``--retry-failed``
appends new lines for failed ids).
Beside each log a score index (``<split>.jsonl.scores``, harness/records/score_index.py) lets
every reader skip the masks; it is derived from the log and rebuilt whenever it does not match.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from harness.errors import HarnessError
from harness.files import naming, write_json_atomic
from harness.records import logline, score_index
from harness.records.score_index import IndexEntry, ScoreIndex


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in a split or model name."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


MANIFEST_NAME = "manifest.json"
RESULTS_NAME = "results.json"


class StoreError(HarnessError):
    """A run directory file that cannot be read; names the file and line."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """All complete records of a JSONL log. A truncated last line is skipped (a killed run);
    a bad line anywhere else is corruption and raises, naming the file and line."""
    return [rec for rec, _, _ in _scan(path)]


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a log one at a time (a 20k-sample log never sits in memory whole)."""
    for rec, _, _ in _scan(path):
        yield rec


def _scan(path: Path) -> Iterator[tuple[dict[str, Any], int, int]]:
    """Yield (record, byte offset of its line, byte offset after it) for every complete line, streaming."""
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
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise StoreError(f"{path}:{lineno}: corrupt record ({exc}); the file is damaged before its end") from exc
            if not isinstance(rec, dict):
                raise StoreError(f"{path}:{lineno}: a record must be a JSON object, got {type(rec).__name__}")
            yield rec, start, offset


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from exc


class PredictionLog:
    """Append-only JSONL log of one model on one split, with its score index beside it."""

    def __init__(self, path: Path, cache: dict[Path, ScoreIndex] | None = None) -> None:
        self.path = path
        self._fh: BinaryIO | None = None
        self._cache = {} if cache is None else cache  # a RunDir's: what this log appends, its readers see
        self._index_writer = score_index.IndexWriter(path)
        self._writing: ScoreIndex | None = None  # while the log is open for appending: its index, kept in step here

    def index(self) -> ScoreIndex:
        """The log's score index; cuts a truncated log tail (a killed run) so appends start clean."""
        index = self._cache.get(self.path)
        if index is None or not index.current() or (index.stat or (0,))[0] != index.end:
            index = self._cache[self.path] = score_index.load(self.path, _scan, repair=True)
        return index

    def done(self, retry_failed: bool = False) -> set[str]:
        """Ids already written (with ``retry_failed``, less those whose last line failed)."""
        latest = self.index().latest()
        return {i for i, e in latest.items() if not (retry_failed and e.failed)}

    def append(self, record: dict[str, Any]) -> None:
        self.append_many([record])

    def append_many(self, records: list[dict[str, Any]]) -> None:
        """Append one batch's records: all their lines in one write and one flush, then their index lines.

        Why one flush per batch loses nothing a flush per line would keep: a batch's predictions
        arrive together, after the model's call, and are written before the next batch is asked
        for, so a kill before the write loses that batch's predictions either way, and one during
        it (microseconds against the model's call) leaves complete lines and at most one torn last
        line, which the next writer cuts off (``index``) and resume redoes. The bytes are those of
        one ``append`` per record, line for line.
        """
        if not records:
            return
        index = self._writing
        if index is None:  # the first batch: check the log once (repairing a torn tail), then track it here
            index = self.index()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab")
        assert self._fh is not None
        offset = index.end  # where the log ends: kept in memory, not asked of the file per line
        lines, entries = [], []
        for record in records:
            line = logline.encode(record)
            lines.append(line)
            entries.append(score_index.entry_of(record, offset, len(line)))
            offset += len(line)
        try:
            self._fh.write(b"".join(lines))
            self._fh.flush()
        except OSError as exc:  # a full disk: nothing of this batch is counted; resume cuts a torn line and redoes it
            raise naming(exc, self.path) from exc
        # Log first, then its index lines: a kill between the two leaves an index short of the
        # log, which the next reader notices (the log is longer) and rebuilds.
        self._index_writer.append_many(entries)
        # The log's size and time are asked once, on closing: until then the cached index does not
        # claim to be current, so a reader in the meantime reads the index file instead.
        index.extend(entries, None)
        self._writing = index
        self._cache[self.path] = index

    def close(self) -> None:
        if self._fh is not None:
            if self._writing is not None:
                st = os.fstat(self._fh.fileno())
                self._writing.stat = (st.st_size, st.st_mtime_ns)
            fh, self._fh = self._fh, None
            try:
                fh.close()  # flushes again what a full disk refused: named as the write was
            except OSError as exc:
                self._writing = None
                self._index_writer.close()
                raise naming(exc, self.path) from exc
        self._writing = None
        self._index_writer.close()


class RunDir:
    """Paths of one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._indexes: dict[Path, ScoreIndex] = {}

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def results_path(self) -> Path:
        return self.root / RESULTS_NAME

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

    def holds(self, path: Path) -> bool:
        """Whether ``path`` lies inside the run directory (a model or split name could lead outside it)."""
        try:
            path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return False
        return True

    def log_lock_path(self, log_path: Path) -> Path:
        """The lock one writer of a log holds while it appends (``RUN/<model>/.<split>.lock``)."""
        return log_path.parent / f".{log_path.stem}.lock"

    def logs(self) -> list[Path]:
        """Every log file of the run, shard logs included (``RUN/<model>/<split>[.shard-i-of-n].jsonl``)."""
        return sorted(self.root.glob("*/*.jsonl"))

    @property
    def stamp_path(self) -> Path:
        """The finished stamp: what results.json and the report were last written from (harness/run/finish.py)."""
        return self.root / ".finished.json"

    def read_stamp(self) -> dict[str, Any] | None:
        try:
            stamp = json.loads(self.stamp_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return stamp if isinstance(stamp, dict) else None

    def write_stamp(self, stamp: dict[str, Any]) -> None:
        write_json_atomic(self.stamp_path, stamp)

    def remove_stamp(self) -> None:
        self.stamp_path.unlink(missing_ok=True)

    @staticmethod
    def is_run(path: Path) -> bool:
        """Whether ``path`` is a run directory (it has a manifest)."""
        return (path / MANIFEST_NAME).is_file()

    def log(self, model: str, split: str, shard_suffix: str | None = None) -> PredictionLog:
        return PredictionLog(self.log_path(model, split, shard_suffix), self._indexes)

    def index(self, path: Path) -> ScoreIndex:
        """The score index of one log, read once per command: a cached index is reused while
        the log is unchanged (one stat), so resume, merge and results share one read."""
        cached = self._indexes.get(path)
        if cached is None or not cached.current():
            cached = self._indexes[path] = score_index.load(path, _scan)
        return cached

    def adopt(self, index: ScoreIndex) -> None:
        """Cache an index this command has just written with its log (a merge)."""
        self._indexes[index.log_path] = index

    def scores(self, model: str, split: str) -> dict[str, IndexEntry]:
        """Per sample id, the index entry of its last line in the split's log (the line that counts)."""
        return self.index(self.log_path(model, split)).latest()

    def shard_logs(self, model: str, split: str) -> list[Path]:
        """Per-rank logs of a split not merged yet (any world size)."""
        return sorted((self.root / model).glob(f"{glob_escape(split)}.shard-*-of-*.jsonl"))

    def records(self, model: str, split: str) -> list[dict[str, Any]]:
        return read_records(self.log_path(model, split))

    def manifest(self) -> dict[str, Any] | None:
        return read_json(self.manifest_path) if self.manifest_path.exists() else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)
