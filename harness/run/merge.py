"""Merge per-rank logs into each split's log, checking ids against the split exactly; ``harness merge``.

The merge refuses to write anything unless the union of the logs' ids is the split's ids,
with no id twice and none missing. The merged log is written in the split's order, so the
numbers (and their bootstrap intervals) equal those of a single-process run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.data.suites import Suite
from harness.errors import HarnessError
from harness.files import write_text_atomic
from harness.publish.finish import RunOutcome, finish, reopen
from harness.records import locks
from harness.records.manifest import now
from harness.records.store import RunDir, iter_records, read_records
from harness.score.version import check_current, forget_version, record_version, scoring_version
from harness.types import Sample


class MergeError(HarnessError):
    """Shard logs whose union is not the split."""


def _examples(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def coverage(run_dir: RunDir, model: str, split: str, samples: Sequence[Sample]) -> tuple[int, int]:
    """(samples with a record in any log, samples in the split)."""
    logs = (run_dir.log_path(model, split), *run_dir.shard_logs(model, split))
    have = {r["id"] for path in logs for r in iter_records(path)}
    return sum(s.id in have for s in samples), len(samples)


def merge_split(run_dir: RunDir, model: str, split: str, samples: Sequence[Sample]) -> bool:
    """Merge the shard logs of one model x split; False when there were none to merge."""
    shard_paths = run_dir.shard_logs(model, split)
    if not shard_paths:
        return False
    by_id: dict[str, dict[str, Any]] = {}
    dupes: list[str] = []
    for path in (run_dir.log_path(model, split), *shard_paths):
        for rec in read_records(path):
            if rec["id"] in by_id:
                dupes.append(rec["id"])
            by_id[rec["id"]] = rec
    if dupes:
        raise MergeError(f"{run_dir.root / model}: {len(dupes)} sample id(s) of {split!r} appear in two logs: {_examples(dupes)}")
    wanted = [s.id for s in samples]
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise MergeError(
            f"{run_dir.root / model}: {len(missing)} of {len(wanted)} samples of {split!r} have no prediction in any shard log "
            f"({_examples(missing)}); run the missing shards (or the same command again) before merging"
        )
    extra = sorted(set(by_id) - set(wanted))
    if extra:
        raise MergeError(f"{run_dir.root / model}: {len(extra)} id(s) in the logs are not samples of {split!r}: {_examples(extra)}")
    text = "".join(json.dumps(by_id[i], separators=(",", ":"), allow_nan=False) + "\n" for i in wanted)
    write_text_atomic(run_dir.log_path(model, split), text)
    for path in shard_paths:  # only after the merged log is safely in place
        path.unlink()
    return True


def merge_run(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int, render: bool,
              reuse: bool = False) -> RunOutcome:
    """Merge shard logs where every sample is covered; write results once all are merged."""
    pending = []
    version = scoring_version(suite.conventions)
    with locks.waiting(run_dir.manifest_lock_path):
        manifest = run_dir.manifest() or {}
        check_current(run_dir, manifest, suite.conventions)  # merged logs and results hold only current scores
        # Every log is current now, so a merged log will be too: its version is recorded before it is
        # written, so a kill in between never leaves a log without one.
        merged = [(m, s) for m, status in manifest.get("status", {}).items() for s in status if run_dir.shard_logs(m, s)]
        for model, split in merged:
            record_version(manifest, run_dir, run_dir.log_path(model, split), version)
        if merged:
            run_dir.write_manifest(manifest)
        for model, status in manifest.get("status", {}).items():
            for split in status:
                if split not in samples:
                    continue
                have, total = coverage(run_dir, model, split, samples[split])
                if have < total:
                    pending.append(f"{model} {split}: {have}/{total}")
                    continue
                for path in run_dir.shard_logs(model, split):
                    forget_version(manifest, run_dir, path)
                merge_split(run_dir, model, split, samples[split])
                status[split] = "done"
        manifest["updated"] = now()
        run_dir.write_manifest(manifest)
    if pending:
        return RunOutcome(run_dir.root, None, None, pending="samples still without predictions: " + "; ".join(pending))
    return finish(run_dir, suite, samples, bootstrap_rounds, render, reuse=reuse)


def merge_and_report(run_dir: Path, data_root: Path | None = None, render: bool = True) -> RunOutcome:
    """Merge shard logs (ids checked against each split), then results and report."""
    r = reopen(run_dir, data_root)
    return merge_run(r.run_dir, r.suite, r.samples, r.bootstrap_rounds, render)
