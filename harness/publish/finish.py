"""A run's last step, and reopening a stored run: results.json from the logs, then the report.

``finish`` ends ``harness run`` and ``harness merge``; ``report_run`` is ``harness report``.
A reopened run takes its suite from the manifest (its file if it still exists, else the
built-in of that name); the fingerprint must match, so numbers are never recomputed against
other ground truth.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness.data.samples import cache_dir, data_digests, load_samples
from harness.data.suites import Suite, load_suite
from harness.files import write_json_atomic
from harness.records.manifest import check_compatible
from harness.records.store import RunDir, StoreError
from harness.score.version import check_current
from harness.types import Sample


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    results_path: Path | None
    report_path: Path | None
    pending: str | None = None  # why results are not written yet (shards still running)


@dataclass(frozen=True)
class ReopenedRun:
    run_dir: RunDir
    suite: Suite
    samples: dict[str, list[Sample]]
    bootstrap_rounds: int
    data_root: Path | None = None
    limit: int | None = None

    def data_digests(self) -> dict[str, str]:
        """Each of the run's splits' current data digest (what its ground truth comes from)."""
        return data_digests(self.suite, list(self.samples), self.data_root)

    def resume(self, data: Mapping[str, str]) -> dict[str, Any]:
        """``resume_inputs`` of this reopened run: so the next ``harness run`` finds it finished at once."""
        return resume_inputs(data, self.limit, self.data_root)


def reopen(run_dir: Path, data_root: Path | None = None) -> ReopenedRun:
    rd = RunDir(run_dir)
    manifest = rd.manifest()
    if manifest is None:
        raise StoreError(f"{run_dir} is not a run directory (no manifest.json)")
    suite_info = manifest["suite"]
    path = Path(suite_info.get("path", ""))
    suite = load_suite(str(path) if path.is_file() else suite_info["name"])
    check_compatible(manifest, suite, {}, run_dir)
    config = manifest.get("config", {})
    root = data_root or (Path(config["data_root"]) if config.get("data_root") else None)
    samples = load_samples(suite, manifest["splits"], root, config.get("limit"))
    return ReopenedRun(rd, suite, samples, int(config.get("bootstrap_rounds", 1000)), root, config.get("limit"))


def report_run(run_dir: Path, data_root: Path | None = None) -> Path:
    """Recompute results.json from the logs and render the report (refused for logs scored by other scoring code)."""
    r = reopen(run_dir, data_root)
    data = r.data_digests()
    check_current(r.run_dir, r.run_dir.manifest() or {}, r.suite.conventions, data=data)
    outcome = finish(r.run_dir, r.suite, r.samples, r.bootstrap_rounds, render=True, resume=r.resume(data))
    assert outcome.report_path is not None
    return outcome.report_path


def write_results(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int) -> None:
    """harness.score.results.write_results, imported when results are written: not on a resume that finds them up to date."""
    from harness.score import results

    results.write_results(run_dir, suite, samples, bootstrap_rounds=bootstrap_rounds)


# Beside results.json: a digest of what results.json and the report were computed from, and the
# size and mtime of each as written, so resuming a finished run skips work that would change nothing.
FINISHED_NAME = ".finished.json"


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _log_stats(run_dir: RunDir) -> list[list[Any]]:
    return sorted([str(p.relative_to(run_dir.root)), *(_stat(p) or [])] for p in run_dir.root.glob("*/*.jsonl"))


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


def _read_stamp(run_dir: RunDir) -> dict[str, Any] | None:
    try:
        stamp = json.loads((run_dir.root / FINISHED_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _files_untouched(run_dir: RunDir, stamp: Mapping[str, Any], render: bool) -> bool:
    if stamp.get("results") is None or stamp.get("results") != _stat(run_dir.results_path):
        return False
    return not render or (stamp.get("report") is not None and stamp.get("report") == _stat(run_dir.report_path))


def finished_outcome(run_dir: RunDir, suite: Suite, bootstrap_rounds: int, resume: Mapping[str, Any], render: bool) -> RunOutcome | None:
    """The outcome of finishing again, when results.json (and with ``render`` the report) were written by a
    finish whose inputs were exactly these (``resume_digest``) and are untouched since; else None."""
    stamp = _read_stamp(run_dir)
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




def finish(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int, render: bool,
           reuse: bool = False, resume: Mapping[str, Any] | None = None) -> RunOutcome:
    """results.json and (with ``render``) the report. With ``reuse`` (resuming ``harness run``), files
    already written from exactly these inputs, and untouched since, are kept as they are. With ``resume``
    (what decides the samples, see ``resume_digest``), the stamp lets the next resume skip loading them."""
    digest = inputs_digest(run_dir, suite, samples, bootstrap_rounds)
    fast = resume_digest(run_dir, suite, bootstrap_rounds, resume) if resume is not None else None
    kept = _read_stamp(run_dir) if reuse else None
    if kept is not None and kept.get("inputs") == digest and _files_untouched(run_dir, kept, render):
        if fast is not None and kept.get("resume") != fast:  # a stamp from before resume digests, or other --data-root
            write_json_atomic(run_dir.root / FINISHED_NAME, {**kept, "resume": fast})
        return RunOutcome(run_dir.root, run_dir.results_path, run_dir.report_path if render else None)
    write_results(run_dir, suite, samples, bootstrap_rounds=bootstrap_rounds)
    report = None
    if render:
        from harness.publish.report import render_report

        report = render_report(run_dir.root, {split: {s.id: s for s in ss} for split, ss in samples.items()}, logs=run_dir)
    stamp: dict[str, Any] = {"inputs": digest, "results": _stat(run_dir.results_path),
                             "report": _stat(run_dir.report_path) if render else None}
    if fast is not None:
        stamp["resume"] = fast
    write_json_atomic(run_dir.root / FINISHED_NAME, stamp)
    return RunOutcome(run_dir.root, run_dir.results_path, report)
