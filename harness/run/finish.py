"""A run's last step, and the writers of a stored run's derived files: results.json from the logs, the
report, and the finished stamp.

``finish`` ends ``harness run``, ``harness merge`` and ``harness rescore``; ``report_run`` is
``harness report``. A reopened run is read through harness/records/reader.py (its suite from the
manifest, fingerprint checked, so numbers are never recomputed against other ground truth).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness.data.samples import cache_dir, load_samples
from harness.data.suites import Suite
from harness.errors import HarnessError
from harness.files import write_json_atomic
from harness.records.manifest import COUNTS_KEY, updating
from harness.records.reader import VERIFY_DEFAULT, StoredRun
from harness.records.store import RunDir
from harness.score.schema import Results
from harness.types import Sample


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    results_path: Path | None
    report_path: Path | None
    pending: str | None = None  # why results are not written yet (shards still running)
    missing: tuple[str, ...] = ()  # model/split pairs asked for and not all stored (missing_pairs)


def record_data_counts(run: StoredRun, suite: Suite, sizes: Mapping[str, int], counts: Mapping[str, Mapping[str, int]]) -> None:
    """Record in the manifest what each split's data held when its samples were loaded: its size (what a
    ``--limit`` run is part of) and its images, objects and expressions against the suite's official counts
    (``complete: false`` with ``data: 4 of 200 images`` where the copy on disk is short)."""
    stated = {split: {"found": dict(counts[split]), "official": dict(suite.splits.get(split, {}).get("counts") or {})}
              for split in counts}
    m = run.manifest
    if all((m.get("split_sizes") or {}).get(s) == n for s, n in sizes.items()) \
            and all((m.get(COUNTS_KEY) or {}).get(s) == c for s, c in stated.items()):
        return
    with updating(run.dir) as manifest:
        manifest.record_data_counts(sizes, stated)
    run.manifest = manifest.doc


def reopen(run_dir: Path, data_root: Path | None = None) -> tuple[StoredRun, dict[str, list[Sample]]]:
    """A stored run and its samples (the run's --limit), its data's sizes and counts recorded."""
    run = StoredRun(run_dir, data_root)
    sizes: dict[str, int] = {}
    counts: dict[str, dict[str, int]] = {}
    samples = load_samples(run.suite, list(run.manifest.get("splits") or []), run.data_root, run.limit, sizes, counts)
    record_data_counts(run, run.suite, sizes, counts)
    run.adopt_samples(samples)
    return run, samples


def report_run(run_dir: Path, data_root: Path | None = None, verify: int | str | None = VERIFY_DEFAULT,
               focus: str | None = None) -> tuple[Path, str, tuple[str, ...]]:
    """Recompute results.json from the logs and render the report (refused for logs scored by other scoring
    code, or a stored score that is not what its mask gives): (the report, what was re-derived, the
    model/split pairs with samples asked for and not stored). ``focus`` (a model of the run; "" for none)
    becomes the run's ``focus`` (the manifest's config, as ``harness run --focus`` records it) before rendering."""
    run, samples = reopen(run_dir, data_root)
    if focus is not None:
        set_focus(run, focus or None)
    data = run.data_digests()
    run.check_current(data=data)
    note = "scores not re-derived (--verify none)" if verify == "none" else run.rederive(verify if isinstance(verify, int) else None)
    outcome = finish(run, samples, render=True, resume=resume_inputs(data, run.limit, run.data_root))
    assert outcome.report_path is not None
    return outcome.report_path, note, outcome.missing


def set_focus(run: StoredRun, focus: str | None) -> None:
    """Record the model the report's headline compares with each other one (None: name the best); a model
    the run does not hold is refused with the ones it does."""
    models = list(run.manifest.get("models") or {})
    if focus is not None and focus not in models:
        raise HarnessError(f"--focus {focus!r} is not a model of {run.root} (models: {', '.join(models) or 'none'})")
    if (run.manifest.get("config") or {}).get("focus") == focus:
        return
    with updating(run.dir) as manifest:
        manifest.doc.setdefault("config", {})["focus"] = focus
    run.manifest = manifest.doc


def write_results(run: StoredRun, samples: dict[str, list[Sample]]) -> Results:
    """results.json derived from the run's score indexes (harness/records/results.py), written atomically."""
    from harness.records.results import compute_results

    doc = compute_results(run, run.suite, samples)
    write_json_atomic(run.dir.results_path, doc)
    return doc


# Beside results.json: a digest of what results.json and the report were computed from, and the
# size and mtime of each as written, so resuming a finished run skips work that would change nothing.


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _log_stats(run_dir: RunDir) -> list[list[Any]]:
    return sorted([str(p.relative_to(run_dir.root)), *(_stat(p) or [])] for p in run_dir.logs())


def resume_inputs(data: Mapping[str, str], limit: int | None, data_root: Path | None) -> dict[str, Any]:
    """What, with the manifest, decides a run's samples (ids and image paths): each split's data digest,
    the --limit, the data root and the cache (generated and extracted images live there)."""
    return {"data": dict(data), "limit": limit, "cache": str(cache_dir()), "data_root": str(data_root) if data_root else None}


def resume_digest(run_dir: RunDir, suite: Suite, bootstrap_rounds: int, resume: Mapping[str, Any]) -> str:
    """``inputs_digest`` without the samples, for a resumed ``harness run`` to tell before it loads them
    that nothing changed: the samples are a function of ``resume`` (each split's data digest, the
    --limit, the data root and cache the image paths are under), which the caller gives."""
    manifest = {k: v for k, v in (run_dir.manifest() or {}).items() if k != "updated"}
    payload = [harness.__version__, suite.fingerprint, bootstrap_rounds, manifest, _log_stats(run_dir), dict(resume)]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _files_untouched(run_dir: RunDir, stamp: Mapping[str, Any], render: bool) -> bool:
    if stamp.get("results") is None or stamp.get("results") != _stat(run_dir.results_path):
        return False
    return not render or (stamp.get("report") is not None and stamp.get("report") == _stat(run_dir.report_path))


def finished_outcome(run_dir: RunDir, suite: Suite, bootstrap_rounds: int, resume: Mapping[str, Any], render: bool) -> RunOutcome | None:
    """The outcome of finishing again, when results.json (and with ``render`` the report) were written by a
    finish whose inputs were exactly these (``resume_digest``) and are untouched since; else None."""
    stamp = run_dir.read_stamp()
    if stamp is None or stamp.get("resume") != resume_digest(run_dir, suite, bootstrap_rounds, resume):
        return None
    if not _files_untouched(run_dir, stamp, render):
        return None
    return RunOutcome(run_dir.root, run_dir.results_path, run_dir.report_path if render else None)


def inputs_digest(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int) -> str:
    """What results.json and the report are made of: the manifest (less its clock), every log's size
    and mtime, the suite's fingerprint, the samples (ids and images) and the engine version."""
    manifest = {k: v for k, v in (run_dir.manifest() or {}).items() if k != "updated"}
    logs = _log_stats(run_dir)
    h = hashlib.sha256()
    h.update(json.dumps([harness.__version__, suite.fingerprint, bootstrap_rounds, manifest, logs], sort_keys=True, default=str).encode())
    for split in sorted(samples):
        h.update(f"\n{split}".encode())
        for s in samples[split]:
            h.update(f"\n{s.id}\t{s.image}".encode())
    return h.hexdigest()




def finish(run: StoredRun, samples: dict[str, list[Sample]], render: bool, reuse: bool = False,
           resume: Mapping[str, Any] | None = None) -> RunOutcome:
    """results.json and (with ``render``) the report. With ``reuse`` (resuming ``harness run``), files
    already written from exactly these inputs, and untouched since, are kept as they are. With ``resume``
    (what decides the samples, see ``resume_digest``), the stamp lets the next resume skip loading them.

    The stamp is written only when the run is finished: every model x split it was asked for has every
    sample stored (failed and not-drawn ones count as stored). A run killed midway and then reported
    has no stamp, so the next ``harness run`` resumes it."""
    run_dir, suite, rounds = run.dir, run.suite, run.bootstrap_rounds
    digest = inputs_digest(run_dir, suite, samples, rounds)
    fast = resume_digest(run_dir, suite, rounds, resume) if resume is not None else None
    kept = run_dir.read_stamp() if reuse else None
    if kept is not None and kept.get("inputs") == digest and _files_untouched(run_dir, kept, render):
        if fast is not None and kept.get("resume") != fast:  # a stamp from before resume digests, or other --data-root
            run_dir.write_stamp({**kept, "resume": fast})
        return RunOutcome(run_dir.root, run_dir.results_path, run_dir.report_path if render else None)
    doc = write_results(run, samples)
    report = None
    if render:
        from harness.publish.report import render_report

        report = render_report(run, {split: {s.id: s for s in ss} for split, ss in samples.items()}, doc=doc)
    missing = tuple(missing_pairs(doc))
    if missing:
        run_dir.remove_stamp()  # not finished: the next `harness run` must predict the rest
        return RunOutcome(run_dir.root, run_dir.results_path, report, missing=missing)
    stamp: dict[str, Any] = {"inputs": digest, "results": _stat(run_dir.results_path),
                             "report": _stat(run_dir.report_path) if render else None}
    if fast is not None:
        stamp["resume"] = fast
    run_dir.write_stamp(stamp)
    return RunOutcome(run_dir.root, run_dir.results_path, report)


def missing_pairs(doc: Mapping[str, Any]) -> list[str]:
    """``model/split: 512 of 3006 stored`` for every model x split of results that lacks samples it was asked for."""
    return [f"{m}/{s}: {int(r.get('n_records') or 0)} of {r.get('n_expected')} stored"
            for m, by in (doc.get("results") or {}).items() for s, r in by.items() if "missing" in (r.get("incomplete") or [])]
