"""``harness rescore RUN`` and ``harness report --rescore RUN``: every stored score derived again.

Each log line's score is recomputed from its stored prediction (the mask, the box) and the
suite's ground truth by the running scoring code; logs whose stored scores differ are rewritten
atomically, the manifest records the new scoring version per log, and results.json (with
``report --rescore``, the report too) is written from the derived scores. Every stored score
that disagreed with its mask is listed with its sample id. This is what turns a run scored by
older code (``report``, ``merge`` and ``gate`` refuse those) into one they accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.records import locks
from harness.records.manifest import updating
from harness.records.versions import run_logs, scoring_version
from harness.run.finish import RunOutcome, finish, reopen, resume_inputs
from harness.run.rescore_log import ChangedScore, LogRescore, rescore_log
from harness.types import Sample


@dataclass(frozen=True)
class RescoreOutcome:
    run_dir: Path
    version: str
    logs: list[LogRescore]
    outcome: RunOutcome

    @property
    def n(self) -> int:
        return sum(log.n for log in self.logs)

    @property
    def changed(self) -> list[ChangedScore]:
        return [c for log in self.logs for c in log.changed]


def rescore_run(run_dir: Path, data_root: Path | None = None, render: bool = False) -> RescoreOutcome:
    """Rescore every log of the run, record the scoring version, write results (and the report)."""
    run, samples = reopen(run_dir, data_root)
    rd, conv = run.dir, run.suite.conventions
    version = scoring_version(conv)
    with locks.held(rd.writer_lock_path, what=str(run_dir)):  # no run may append while logs are rewritten
        manifest = rd.manifest() or {}
        config = manifest.get("config") or {}
        # Ground truth of every sample, whatever --limit the results use: a log may hold more.
        every = samples if config.get("limit") is None else run.load_samples(limit=None)
        by_id: dict[str, dict[str, Sample]] = {split: {s.id: s for s in ss} for split, ss in every.items()}
        logs = []
        for _, split, path in run_logs(rd, manifest.get("status")):
            logs.append(rescore_log(path, by_id.get(split, {}), conv))
            with updating(rd) as m:  # after the log is in place: a kill before this only means rescoring again
                m.record_version(rd, path, version)
        # Every score now describes the current ground truth: say which (the digest report, merge and gate compare with).
        data = run.data_digests()
        with updating(rd) as m:
            for split, digest in data.items():
                m.record_data(split, digest)
        run.manifest = m.doc
        outcome = finish(run, samples, render=render, resume=resume_inputs(data, run.limit, run.data_root))
    return RescoreOutcome(run_dir, version, logs, outcome)
