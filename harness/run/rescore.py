"""``harness rescore RUN`` and ``harness report --rescore RUN``: every stored score derived again.

Each log line's score is recomputed from its stored prediction (the mask, the box) and the
suite's ground truth by the running scoring code; logs whose stored scores differ are rewritten
atomically, the manifest records the new scoring version per log, and results.json (with
``report --rescore``, the report too) is written from the derived scores. Every stored score
that disagreed with its mask is listed with its sample id. This is what turns a run scored by
older code (``report``, ``merge`` and ``gate`` refuse those) into one they accept.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.records import locks
from harness.records.manifest import updating
from harness.records.store import RunDir
from harness.records.versions import run_logs, scoring_version
from harness.run.finish import RunOutcome, finish, reopen, resume_inputs
from harness.run.rescore_log import ChangedScore, LogRescore, rescore_log
from harness.types import Sample

_MAX_LISTED = 20  # changed scores listed on stderr (a scoring fix may change thousands)


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


def print_rescore(res: RescoreOutcome) -> None:
    """The summary on stdout; every changed score (up to a limit) on stderr, with its sample id."""
    changed = res.changed
    head = f"rescored {res.n} samples in {len(res.logs)} log{'s' if len(res.logs) != 1 else ''} (scoring version {res.version}): "
    if not changed:
        print(head + "every stored score matches its mask")
    else:
        ids = ", ".join(c.id for c in changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        print(head + f"{len(changed)} stored score{'s' if len(changed) != 1 else ''} disagreed with the mask and "
              f"{'were' if len(changed) != 1 else 'was'} replaced: {ids}")
    for c in changed[:_MAX_LISTED]:
        print(f"score changed: {c.describe()}", file=sys.stderr)
    if len(changed) > _MAX_LISTED:
        print(f"score changed: ... and {len(changed) - _MAX_LISTED} more", file=sys.stderr)
    out = res.outcome
    if out.results_path is not None:
        print(f"results: {out.results_path}")
    if out.report_path is not None:
        print(f"report:  {out.report_path}")
    elif changed and RunDir(res.run_dir).report_path.exists():
        print(f"the report still shows the old scores: harness report {res.run_dir}")


def _cmd_rescore(args: argparse.Namespace) -> int:
    print_rescore(rescore_run(args.run_dir, data_root=args.data_root, render=False))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rescore", help="recompute every stored score from its mask and the ground truth; rewrite the logs and results.json",
        description="Recomputes each log line's score from its stored mask with this harness's scoring code, rewrites the "
                    "logs whose scores differ (listing each changed sample id on stderr), records the scoring version and "
                    "writes results.json. `harness report --rescore RUN` does the same and renders the report.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data-root", type=Path, help="where datasets live (default: the run's)")
    p.set_defaults(func=_cmd_rescore)
