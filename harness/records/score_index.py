"""The score index beside each prediction log: what resume, merge, results, gate and baseline need,
without the masks.

    RUN/<model>/<split>.jsonl          the log: one line per prediction, masks included (the truth)
    RUN/<model>/<split>.jsonl.scores   its index: one short line per log line

An index line is ``[id, offset, length, score, failed, parse_failed, error, pixels, instances]``: the byte
range of the log line, its ``SampleScore`` scalar fields in declaration order (``null`` when the record has
none), whether the prediction has no mask (nor instances), whether its answer could not be parsed, the error
text of a failed prediction, h·w of the stored mask's RLE header (``null`` without a mask; the first
instance's without a mask), which bounds every area of the score (harness/records/invariants.py), and the
score's instance match as stored (``InstanceMatch.to_json``; ``null`` where the suite scores no instances).
Reading it costs a few percent of parsing the log, and the gallery reads the few records it shows by offset.

The index is derived, never trusted over the log. It is appended after each batch of log lines, so
a killed writer leaves it at most one batch behind. It is used only when its last entry ends exactly
where the log ends, it was written no earlier than the log was last changed, and the log line its
last entry points at has that entry's id; otherwise (a torn line, a log that grew without it, a log
rewritten or cut, an index of another format) it is rebuilt from the log, once, and rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from harness.errors import HarnessError
from harness.files import naming, write_text_atomic
from harness.records import logline
from harness.score.paired import PairScores
from harness.types import SCORE_ROW_FIELDS, InstanceMatch, SampleScore

FORMAT = 3  # 2: the mask's pixel count (h*w of its RLE header) at the end of each line; 3: the instance match after it
SCORE_FIELDS = SCORE_ROW_FIELDS
# The score's field names are part of the header: an index written for another SampleScore is rebuilt.
_HEADER = json.dumps({"harness_score_index": FORMAT, "fields": list(SCORE_FIELDS)}) + "\n"
_POSITION = {name: k for k, name in enumerate(SCORE_FIELDS)}


class IndexEntry(NamedTuple):
    """One log line, summarised (a tuple: 100k of them stay small)."""

    id: str
    offset: int
    length: int
    row: list[Any] | None  # the SampleScore's fields in declaration order; None: no usable score
    failed: bool  # the prediction has no mask (an error, a crash, a timeout): what --retry-failed redoes
    parse_failed: bool  # the model's answer could not be parsed
    error: str | None
    pixels: int | None = None  # h*w of the stored mask's RLE header; None without a mask (or a header)
    instances: dict[str, Any] | None = None  # the score's InstanceMatch as stored; None where none is scored

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def score(self) -> SampleScore | None:
        if self.row is None:
            return None
        if self.instances is None:
            return SampleScore(*self.row)
        return SampleScore(**dict(zip(SCORE_FIELDS, self.row)), instances=InstanceMatch.from_json(self.instances))

    @property
    def not_drawn(self) -> bool:
        """The protocol did not draw this sample (harness/records/logline.py says what each question means)."""
        return bool(self.row and self.row[_POSITION["not_drawn"]])

    @property
    def bad_answer(self) -> bool:
        """Failed, or an answer that could not be parsed; never a sample not drawn (as logline.bad_answer)."""
        return not self.not_drawn and (self.failed or self.parse_failed)

    def value(self, name: str) -> Any:
        """One field of the score (None without a score), without building the SampleScore."""
        return None if self.row is None else self.row[_POSITION[name]]


def index_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".scores")


def entry_of(record: dict[str, Any], offset: int, length: int) -> IndexEntry:
    """The index entry of one parsed log record at ``offset`` (``length`` bytes with its newline)."""
    data = record.get("score")
    instances = None
    if type(data) is dict and tuple(data) == SCORE_FIELDS:  # as SampleScore.to_json writes it: the row is its values
        row: list[Any] | None = list(data.values())
    else:
        score = _score_of(data)
        row = None if score is None else [getattr(score, f) for f in SCORE_FIELDS]
        if score is not None and score.instances is not None:
            instances = score.instances.to_json()
    # What failed and what was not drawn is the codec's to say (harness/records/logline.py), for every reader alike.
    return IndexEntry(str(record["id"]), offset, length, row, logline.failed(record), logline.parse_failed(record),
                      logline.error(record), _pixels(logline.prediction_json(record)), instances)


def _pixels(prediction: dict[str, Any]) -> int | None:
    """h*w of the RLE ``size`` header of the prediction's mask (else of its first instance's), when well-formed."""
    mask = prediction.get("mask")
    found = prediction.get("instances")
    if mask is None and isinstance(found, list) and found and isinstance(found[0], dict):
        mask = found[0].get("mask")
    size = mask.get("size") if isinstance(mask, dict) else None
    if isinstance(size, list) and len(size) == 2 and all(type(v) is int and v >= 0 for v in size):
        return size[0] * size[1]
    return None


def _score_of(data: Any) -> SampleScore | None:
    try:
        return SampleScore.from_json(data) if isinstance(data, dict) else None
    except (TypeError, KeyError, ValueError):  # other fields than a SampleScore's: not usable, like a missing score
        return None


# One encoder for every index line (json.dumps with options builds a new one per call); same bytes.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _line(e: IndexEntry) -> str:
    return _ENCODER.encode([e.id, e.offset, e.length, e.row, int(e.failed), int(e.parse_failed), e.error, e.pixels,
                            e.instances]) + "\n"


def _parse(line: str) -> IndexEntry:
    return _entry(json.loads(line))


def _entry(row: list[Any]) -> IndexEntry:
    sid, offset, length, score, failed, parse_failed, error, pixels, instances = row
    if score is not None and len(score) != len(SCORE_FIELDS):
        raise ValueError(f"a score of {len(score)} fields, not {len(SCORE_FIELDS)}")
    return IndexEntry(str(sid), int(offset), int(length), score, bool(failed), bool(parse_failed), error,
                      None if pixels is None else int(pixels), instances)


class ScoreIndex:
    """Every line of one log, summarised, in log order (superseded lines included).

    ``latest()`` is what every reader uses: per id, the last line written for it, so a retried
    sample's new line counts and its failed one does not.
    """

    def __init__(self, log_path: Path, entries: list[IndexEntry], stat: tuple[int, int] | None) -> None:
        self.log_path = log_path
        self.entries = entries
        self.stat = stat  # (size, mtime_ns) of the log this index describes; None: no log
        self._latest: dict[str, IndexEntry] | None = None

    @property
    def end(self) -> int:
        return self.entries[-1].end if self.entries else 0

    def latest(self) -> dict[str, IndexEntry]:
        """id -> the entry of its last line (ids in the order they first appear)."""
        if self._latest is None:
            self._latest = {e.id: e for e in self.entries}
        return self._latest

    def extend(self, entries: list[IndexEntry], stat: tuple[int, int] | None) -> None:
        """Entries just appended to the log, which is now ``stat`` (None: not known yet, so not ``current``)."""
        self.entries.extend(entries)
        if self._latest is not None:
            for entry in entries:
                self._latest[entry.id] = entry
        self.stat = stat

    def current(self) -> bool:
        """Whether the log is still exactly what this index was made from (one stat call)."""
        return _stat(self.log_path) == self.stat

    def read(self, entries: list[IndexEntry]) -> Iterator[dict[str, Any]]:
        """The full records of some entries, read by offset (the gallery's few samples)."""
        if not entries:  # a model that could not run has no log to open
            return
        with self.log_path.open("rb") as fh:
            for e in entries:
                fh.seek(e.offset)
                yield json.loads(fh.read(e.length))


def read_lines(chosen: list[tuple[ScoreIndex, IndexEntry]]) -> list[bytes]:
    """The log lines of some (index, entry) pairs, byte for byte and in the order given (a merge
    copies lines from several logs without parsing them)."""
    with ExitStack() as stack:
        handles: dict[Path, BinaryIO] = {}
        lines = []
        for index, e in chosen:
            fh = handles.get(index.log_path)
            if fh is None:
                fh = handles[index.log_path] = stack.enter_context(index.log_path.open("rb"))
            fh.seek(e.offset)
            lines.append(fh.read(e.length))
        return lines


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def load(log_path: Path, scan: Any, repair: bool = False) -> ScoreIndex:
    """The index of ``log_path``: read from its file when that is valid, else rebuilt from the log with
    ``scan`` (harness.records.store's line scanner) and rewritten. With ``repair`` (the writer, before
    appending), a torn last log line is cut off first, as resume always did."""
    stat = _stat(log_path)
    if stat is None:
        return ScoreIndex(log_path, [], None)
    entries = _read_valid(log_path, stat)
    if entries is not None:
        return ScoreIndex(log_path, entries, stat)
    entries = []
    for rec, start, end in scan(log_path):
        if "id" not in rec:
            raise HarnessError(f"{log_path}: the record at byte {start} has no 'id'")
        entries.append(entry_of(rec, start, end - start))
    good_end = entries[-1].end if entries else 0
    if repair and good_end != stat[0]:
        with log_path.open("r+b") as fh:
            fh.truncate(good_end)  # blank lines after the last record go too, as always
    stat = _stat(log_path)
    assert stat is not None
    if stat[0] == good_end:  # only an index that matches the log is worth writing
        try:
            write_text_atomic(index_path(log_path), _HEADER + "".join(map(_line, entries)))
        except OSError:  # a read-only run directory: the index lives in memory for this command
            pass
    return ScoreIndex(log_path, entries, stat)


def _read_valid(log_path: Path, stat: tuple[int, int]) -> list[IndexEntry] | None:
    """The index file's entries when they describe the log as it is now; None when they may not."""
    path = index_path(log_path)
    try:
        if path.stat().st_mtime_ns < stat[1]:  # the log changed after the index was last written
            return None
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if not text.startswith(_HEADER) or not text.endswith("\n"):  # another format, or a torn last line
        return None
    try:  # one JSON document of all lines (a newline never occurs inside a JSON string): fast at 100k
        rows = json.loads("[" + text[len(_HEADER):].rstrip("\n").replace("\n", ",") + "]")
        entries = list(map(IndexEntry._make, rows))  # checked below, field by field, without a call per row
    except (ValueError, TypeError):
        return None
    # The lines must tile the log from its first byte to its last: an index missing lines (or
    # a log with blank lines, which a rebuild re-reads) is not trusted.
    end, width = 0, len(SCORE_FIELDS)
    for e in entries:
        if type(e.offset) is not int or type(e.length) is not int or e.offset != end or e.length <= 0 \
                or type(e.id) is not str or not (e.row is None or (type(e.row) is list and len(e.row) == width)) \
                or not (e.pixels is None or type(e.pixels) is int) or not (e.instances is None or type(e.instances) is dict):
            return None
        end += e.length
    if end != stat[0]:
        return None
    if entries:  # the last line it points at must be that record: a rewritten log of equal size is caught
        last = entries[-1]
        with log_path.open("rb") as fh:
            fh.seek(last.offset)
            line = fh.read(last.length)
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        if not line.endswith(b"\n") or not isinstance(rec, dict) or str(rec.get("id")) != last.id:
            return None
    return entries


class IndexWriter:
    """Appends index lines after their log lines (same order, one write and flush per batch)."""

    def __init__(self, log_path: Path) -> None:
        self.path = index_path(log_path)
        self._fh: Any = None

    def append_many(self, entries: list[IndexEntry]) -> None:
        try:
            if self._fh is None:
                self._fh = self.path.open("a", encoding="utf-8")
                if self._fh.tell() == 0:
                    self._fh.write(_HEADER)
            self._fh.write("".join(map(_line, entries)))
            self._fh.flush()
        except OSError as exc:  # an index short of its log is rebuilt by the next reader
            raise naming(exc, self.path) from exc

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_merged(log_path: Path, lines: list[bytes], entries: list[IndexEntry]) -> ScoreIndex:
    """Write a whole log (atomically) and its index, e.g. after a merge; ``entries`` are the lines'
    entries from their old logs, re-addressed here."""
    placed, offset = [], 0
    for line, e in zip(lines, entries):
        placed.append(e._replace(offset=offset, length=len(line)))
        offset += len(line)
    write_text_atomic(log_path, b"".join(lines).decode("utf-8"))
    write_text_atomic(index_path(log_path), _HEADER + "".join(map(_line, placed)))
    return ScoreIndex(log_path, placed, _stat(log_path))


def pair_scores(entries: Mapping[str, IndexEntry]) -> PairScores:
    """The paired bootstrap's columns of one log's entries (id -> entry), sorted by id: the scalar scores and,
    on a suite scored on instances, each sample's match. Entries without a usable score are left out."""
    return PairScores.from_rows({i: e.row for i, e in entries.items() if e.row is not None},
                                {i: e.instances for i, e in entries.items() if e.row is not None})

