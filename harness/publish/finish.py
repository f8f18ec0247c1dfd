"""A run's last step, and reopening a stored run: results.json from the logs, then the report.

``finish`` ends ``harness run`` and ``harness merge``; ``report_run`` is ``harness report``.
A reopened run takes its suite from the manifest (its file if it still exists, else the
built-in of that name); the fingerprint must match, so numbers are never recomputed against
other ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.data.samples import load_samples
from harness.data.suites import Suite, load_suite
from harness.records.manifest import check_compatible
from harness.records.store import RunDir, StoreError
from harness.score.results import write_results
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
    return ReopenedRun(rd, suite, samples, int(config.get("bootstrap_rounds", 1000)))


def report_run(run_dir: Path, data_root: Path | None = None) -> Path:
    """Recompute results.json from the logs and render the report."""
    r = reopen(run_dir, data_root)
    outcome = finish(r.run_dir, r.suite, r.samples, r.bootstrap_rounds, render=True)
    assert outcome.report_path is not None
    return outcome.report_path


def finish(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int, render: bool) -> RunOutcome:
    write_results(run_dir, suite, samples, bootstrap_rounds=bootstrap_rounds)
    report = None
    if render:
        from harness.publish.report import render_report

        report = render_report(run_dir.root, {split: {s.id: s for s in ss} for split, ss in samples.items()})
    return RunOutcome(run_dir.root, run_dir.results_path, report)
