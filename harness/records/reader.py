"""The one reader of a stored run, and it verifies.

Every command and the notebook API read a run through ``StoredRun``: ``report``, ``gate``,
``baseline save``, ``leaderboard``, ``table``, ``compare``, ``merge``, ``rescore``,
``harness.load_run`` and the finished-run fast path. Nothing else opens a run's files by path.
What it trusts and what it derives:

- **Per-sample scores** come from each log's score index (harness/records/score_index.py, itself
  derived from the log and rebuilt when it does not match), and every line is checked against the
  invariants of a score (harness/records/invariants.py) as it is loaded.
- **Aggregates** are derived from those scores (harness/records/results.py), never read:
  ``results()`` recomputes every number of ``results.json`` but the bootstrap intervals and refuses
  a file that says anything else, or whose recorded digest of what it was computed from (each log's
  size and sha256, the ids counted, scoring version, data digests, conventions, ``--limit``,
  bootstrap rounds) is not the run as it is now. ``results(intervals=True)`` recomputes the
  intervals too (seconds at 100k samples; ``--verify all``).
- **Scores against masks**: ``rederive(n)`` scores a seeded random sample of stored lines again
  from their masks and the ground truth and refuses any that differs (harness/records/rederive.py).
- Logs scored by other scoring code, or against other ground truth than the current data, are
  refused (harness/records/versions.py).

A refusal names the file (and line) and the fix: ``harness report RUN`` for a results.json that is
not what the logs give, ``harness rescore RUN`` for a stored score that is not what its mask gives.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.data.conventions import Conventions
from harness.errors import HarnessError
from harness.records import versions
from harness.records.invariants import UntrustedRunError, check_entries
from harness.records.score_index import IndexEntry, ScoreIndex
from harness.records.score_index import pair_scores as scores_of
from harness.records.store import RunDir, StoreError, iter_records, read_json
from harness.score.paired import PairScores
from harness.score.schema import Results, check_results

if TYPE_CHECKING:
    from harness.data.suites import Suite
    from harness.types import Sample

# Stored lines re-derived from their masks per model x split by gate, leaderboard and report (--verify N).
VERIFY_DEFAULT = 256
_INTERVAL = "_ci95"  # the bootstrap intervals' keys end so (cIoU, gIoU; cgF1, pmF1, IL_MCC): recomputed with intervals=True
# Float aggregates are compared after the same derivation on the same rows: equal up to JSON's round trip.
_TOLERANCE = 1e-9
# The samples of the last data set loaded in this process (see StoredRun.samples_or_none).
_LOADED: dict[tuple[Any, ...], dict[str, list[Sample]]] = {}


class StoredRun:
    """One run directory, read and verified (see the module docstring)."""

    def __init__(self, root: str | Path, data_root: str | Path | None = None, run_dir: RunDir | None = None) -> None:
        self.root = Path(root)
        self.dir = run_dir or RunDir(self.root)  # a writer's own RunDir: the score indexes it read are read once
        manifest = self.dir.manifest()
        if manifest is None:
            raise StoreError(f"{self.root} is not a run directory (no manifest.json)")
        if not isinstance(manifest, dict):
            raise StoreError(f"{self.dir.manifest_path}: not a run manifest (a JSON object expected)")
        self.manifest: dict[str, Any] = manifest
        config = manifest.get("config") or {}
        self.data_root = Path(data_root) if data_root is not None else (Path(config["data_root"]) if config.get("data_root") else None)
        self._checked: dict[Path, ScoreIndex] = {}
        self._samples: tuple[dict[str, list[Sample]] | None, str] | None = None

    def __repr__(self) -> str:
        return f"StoredRun({str(self.root)!r})"

    # -- what the run is ------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.manifest.get("config") or {})

    @property
    def limit(self) -> int | None:
        return self.config.get("limit")

    @property
    def bootstrap_rounds(self) -> int:
        return int(self.config.get("bootstrap_rounds", 1000))

    @cached_property
    def conventions(self) -> Conventions:
        return Conventions.from_dict(self.manifest.get("conventions"), where=f"{self.dir.manifest_path}: conventions")

    def asked(self) -> list[tuple[str, str]]:
        """Every model x split a command of this run asked for (``asked``), in the order asked; runs
        written before it was recorded: the model x splits with a status."""
        asked = self.manifest.get("asked") or self.manifest.get("status") or {}
        return [(m, s) for m, splits in asked.items() for s in splits]

    @cached_property
    def suite(self) -> Suite:
        """The run's suite: its file where it still exists, else the built-in of its name; refused when its
        fingerprint is not the run's (other data, splits or conventions)."""
        from harness.data.suites import stored_suite
        from harness.records.manifest import check_compatible

        suite = stored_suite(self.manifest.get("suite") or {})
        check_compatible(self.manifest, suite, {}, self.root)
        return suite

    # -- the logs -------------------------------------------------------------------------------

    def log_path(self, model: str, split: str) -> Path:
        return self.dir.log_path(model, split)

    def index(self, model: str, split: str) -> ScoreIndex:
        """The score index of one model x split's log, its lines checked against the invariants once per load."""
        path = self.log_path(model, split)
        index = self.dir.index(path)
        if self._checked.get(path) is not index:
            check_entries(index.entries, path, self.conventions.giou_eps, self.root)
            self._checked[path] = index
        return index

    def entries(self, model: str, split: str) -> dict[str, IndexEntry]:
        """Per sample id, the index entry of its last line (the line that counts), checked."""
        return self.index(model, split).latest()

    def pair_scores(self, model: str, split: str) -> PairScores:
        """The per-sample scores sorted by id (the paired bootstrap's shape); not-drawn samples left out."""
        entries = self.entries(model, split)
        unusable = next((i for i, e in entries.items() if e.row is None), None)
        if unusable is not None:
            raise StoreError(f"{self.log_path(model, split)}: the record of {unusable!r} has no usable score; "
                             f"run `harness rescore {self.root}`")
        return scores_of(entries)

    def records(self, model: str, split: str) -> list[dict[str, Any]]:
        """The full records of one log, the last of each id (as on resume), in the order ids first appear."""
        self.index(model, split)  # the invariants, before any of its scores is handed out
        by_id: dict[str, dict[str, Any]] = {}
        for rec in iter_records(self.log_path(model, split)):
            by_id[str(rec["id"])] = rec
        return list(by_id.values())

    def log_digests(self, pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        """``"<model>/<split>.jsonl" -> {"size", "sha256"}`` of the logs of ``pairs`` (absent logs: size 0)."""
        out = {}
        for model, split in pairs:
            path = self.log_path(model, split)
            h = hashlib.sha256()
            size = 0
            if path.is_file():
                with path.open("rb") as fh:
                    while block := fh.read(1 << 20):
                        h.update(block)
                        size += len(block)
            out[versions.log_key(self.dir, path)] = {"size": size, "sha256": h.hexdigest()}
        return out

    # -- samples (need the data) -----------------------------------------------------------------

    def load_samples(self, limit: int | str | None = "run") -> dict[str, list[Sample]]:
        """Each of the run's splits' samples (the run's ``--limit`` unless ``limit`` says otherwise);
        raises a HarnessError naming what is missing where the data cannot be read."""
        from harness.data.samples import load_samples

        chosen = self.limit if limit == "run" else limit
        return load_samples(self.suite, list(self.manifest.get("splits") or []), self.data_root,
                            chosen if isinstance(chosen, int) else None)

    def samples_or_none(self) -> tuple[dict[str, list[Sample]] | None, str]:
        """(the samples, "") where the data can be read here, else (None, why not); loaded once per process
        for one suite, data root and --limit (a gate of a run against another run of the same data loads them once)."""
        if self._samples is None:
            try:
                from harness.data.samples import cache_dir  # generated and extracted images live there

                key = (self.suite.fingerprint, str(self.suite.path), str(self.data_root), str(cache_dir()), self.limit)
                if key not in _LOADED:
                    _LOADED.clear()  # one data set at a time: 100k samples are hundreds of MB
                    _LOADED[key] = self.load_samples()
                self._samples = (_LOADED[key], "")
            except (HarnessError, OSError) as exc:
                self._samples = (None, str(exc))
        return self._samples

    def adopt_samples(self, samples: dict[str, list[Sample]]) -> None:
        """The samples a writer has loaded already (``reopen``): re-derivation uses them, not a second load."""
        self._samples = (samples, "")

    def data_digests(self) -> dict[str, str]:
        """Each of the run's splits' current data digest."""
        from harness.data.samples import data_digests

        return data_digests(self.suite, list(self.manifest.get("splits") or []), self.data_root)

    # -- verification ---------------------------------------------------------------------------

    def check_current(self, results: Mapping[str, Any] | None = None, data: Mapping[str, str] | None = None) -> None:
        """Refuse logs (and ``results``) scored by other scoring code or against other ground truth."""
        versions.check_current(self.dir, self.manifest, self.conventions, results,
                               data=versions.current_data(self.manifest, self.data_root) if data is None else data)

    def results(self, intervals: bool = False) -> Results:
        """results.json, verified: its digest is this run's, and every number is what the scores give
        (with ``intervals``, the bootstrap intervals too). Refused otherwise, naming the file and the fix."""
        from harness.records.results import ids_digest, source_digest

        path = self.dir.results_path
        if not path.is_file():
            raise StoreError(f"{self.root}: no results.json (not scored yet: run `harness report {self.root}`)")
        doc = check_results(read_json(path), str(path))
        self.check_current(doc)
        fix = f"results.json is a cache of the logs: run `harness report {self.root}` to derive it again"
        source = doc.get("source")
        if not isinstance(source, dict):
            raise UntrustedRunError(f"{path} records no digest of what it was computed from (written by hand or by an "
                                    f"older harness); {fix}")
        pairs = [(m, s) for m, by in doc["results"].items() for s in by]
        counted: dict[tuple[str, str], list[str]] = {}
        for model, split in pairs:
            entries = self.entries(model, split)
            ids = sorted(entries)
            if ids_digest(ids) != (source.get("ids") or {}).get(f"{model}/{split}"):
                ids = self._counted_ids(model, split, entries, path)
            counted[(model, split)] = ids
        now = source_digest(self, counted)
        stale = [_differs(key, source.get(key), now[key]) for key in now if source.get(key) != now[key]]
        if stale:
            raise UntrustedRunError(f"{path} was not computed from this run as it is now ({'; '.join(stale)}); {fix}")
        derived: dict[tuple[str, str], dict[str, Any]] = {}
        draws: dict[tuple[str, str], dict[str, Any]] = {}
        wrong = self._wrong_numbers(doc, counted, intervals, derived, draws)
        wrong += _wrong_average(doc, derived, draws, intervals)
        if wrong:
            shown = "; ".join(wrong[:4]) + (f"; and {len(wrong) - 4} more" if len(wrong) > 4 else "")
            raise UntrustedRunError(f"{path} says what its logs do not: {shown}; {fix}")
        return doc

    def _counted_ids(self, model: str, split: str, entries: Mapping[str, IndexEntry], path: Path) -> list[str]:
        """The ids a results.json counted where the log holds more (a resume under a smaller --limit):
        the log's ids that are samples of the split, which needs the data."""
        samples, why = self.samples_or_none()
        if samples is None:
            raise UntrustedRunError(
                f"{path}: the numbers of {model}/{split} do not cover the ids its log holds, and the data that tells which "
                f"ids they should cover cannot be read ({why}); give --data-root, or run `harness report {self.root}`")
        return sorted(s.id for s in samples.get(split, []) if s.id in entries)

    def _wrong_numbers(self, doc: Mapping[str, Any], counted: Mapping[tuple[str, str], list[str]], intervals: bool,
                       derived_out: dict[tuple[str, str], dict[str, Any]], draws: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
        from harness.records.results import expected_counts, split_result

        wrong = []
        rounds = self.bootstrap_rounds if intervals else 0
        for (model, split), ids in counted.items():
            stored = doc["results"][model][split]
            n_expected, n_split, limit, data = expected_counts(self.manifest, split)
            if n_expected is None:  # a run from before split sizes were recorded: its own claim, bounded by what is stored
                n_expected = max(int(stored.get("n_expected") or 0), len(ids))
            derived = derived_out[(model, split)] = split_result(
                self.entries(model, split), ids, self.conventions, rounds, n_expected, n_split, bool(limit and len(ids) >= limit),
                data, draws.setdefault((model, split), {}))
            wrong += _differences(f"{model}/{split}", stored, derived, intervals)
        return wrong

    def rederive(self, n: int | None = VERIFY_DEFAULT) -> str:
        """Score again from their masks a seeded sample of ``n`` stored lines per model x split (all with
        None) and refuse any that differs; the line to print: what was re-derived, or why nothing was."""
        from harness.records.rederive import rederive

        return rederive(self, n)


def _differences(where: str, stored: Mapping[str, Any], derived: Mapping[str, Any], intervals: bool) -> list[str]:
    """What ``stored`` says that ``derived`` does not (the intervals only when they were derived)."""
    keys = set(derived) | {k for k in stored if not k.endswith(_INTERVAL) or intervals}
    return [f"{where} {key} is {stored.get(key)!r}, the scores give {derived.get(key)!r}" for key in sorted(keys)
            if (intervals or not key.endswith(_INTERVAL)) and not _same(stored.get(key), derived.get(key))]


def _wrong_average(doc: Mapping[str, Any], derived: Mapping[tuple[str, str], Mapping[str, Any]],
                   draws: Mapping[tuple[str, str], Mapping[str, Any]], intervals: bool) -> list[str]:
    """A suite average (results.json ``average``) that is not the average of the split results just derived."""
    from harness.records.results import average_block

    block = doc.get("average")
    if block is None:
        return []
    splits = block.get("splits") if isinstance(block, dict) else None
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        return ["average names no list of splits"]
    by_model: dict[str, dict[str, Mapping[str, Any]]] = {}
    for (model, split), res in derived.items():
        by_model.setdefault(model, {})[split] = res
    again = average_block(splits, by_model, draws if intervals else None)["results"]
    stored = block.get("results") if isinstance(block.get("results"), dict) else {}
    wrong = [f"average of {m} is in the file but not every split it averages is" for m in stored if m not in again]
    wrong += [f"average of {m} is missing" for m in again if m not in stored]
    for model in again:
        if model in stored:
            wrong += _differences(f"average of {model}", stored[model], again[model], intervals)
    return wrong


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            return all(_same(x, y) for x, y in zip(a, b))
        return a == b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return abs(float(a) - float(b)) <= _TOLERANCE * max(1.0, abs(float(b)))


def _differs(key: str, then: Any, now: Any) -> str:
    if key == "logs" and isinstance(then, dict):
        changed = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
        return "log" + ("s " if len(changed) > 1 else " ") + ", ".join(changed) + " changed since"
    if key == "ids":
        return "the ids counted are not the ids stored"
    return f"{key} {then!r} then, {now!r} now"


def verify_option(value: str) -> int | str | None:
    """``--verify N|all|none`` -> N, None (all) or "none"."""
    text = value.strip().lower()
    if text == "all":
        return None
    if text == "none":
        return "none"
    try:
        n = int(text)
    except ValueError:
        raise HarnessError(f"--verify {value!r}: a number of lines per model x split, 'all' or 'none'") from None
    if n < 0:
        raise HarnessError(f"--verify {value!r}: a number of lines must be >= 0")
    return n
