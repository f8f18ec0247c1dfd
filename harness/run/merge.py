"""Merge per-rank logs into each split's log, checking ids against the split exactly; ``harness merge``.

The merge refuses to write anything unless the union of the logs' ids is the split's ids,
with no id twice and none missing. The merged log is written in the split's order, so the
numbers (and their bootstrap intervals) equal those of a single-process run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.records import score_index
from harness.records.manifest import updating
from harness.records.reader import StoredRun
from harness.records.score_index import IndexEntry, ScoreIndex
from harness.records.store import RunDir
from harness.records.versions import check_current, scoring_version
from harness.run.finish import RunOutcome, finish, reopen, resume_inputs
from harness.types import Sample


class MergeError(HarnessError):
    """Shard logs whose union is not the split."""


def _examples(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def coverage(run_dir: RunDir, model: str, split: str, samples: Sequence[Sample]) -> tuple[int, int]:
    """(samples with a record in any log, samples in the split)."""
    logs = (run_dir.log_path(model, split), *run_dir.shard_logs(model, split))
    have = {i for path in logs for i in run_dir.index(path).latest()}
    return sum(s.id in have for s in samples), len(samples)


def merge_split(run_dir: RunDir, model: str, split: str, samples: Sequence[Sample]) -> bool:
    """Merge the shard logs of one model x split; False when there were none to merge."""
    shard_paths = run_dir.shard_logs(model, split)
    if not shard_paths:
        return False
    by_id: dict[str, tuple[ScoreIndex, IndexEntry]] = {}
    dupes: list[str] = []
    main = run_dir.log_path(model, split)
    for path in (main, *shard_paths):
        index = run_dir.index(path)
        for sid, entry in index.latest().items():  # within one log, an id's last line counts
            if sid in by_id:
                earlier_index, earlier = by_id[sid]
                # A failed line of the merged log is superseded by a shard's retry (--retry-failed);
                # any other id found twice is a duplicate.
                if not (earlier_index.log_path == main and earlier.failed):
                    dupes.append(sid)
            by_id[sid] = (index, entry)
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
    # The lines are copied byte for byte (no record is parsed again), in the split's order.
    chosen = [by_id[i] for i in wanted]
    lines = score_index.read_lines(chosen)
    run_dir.adopt(score_index.write_merged(run_dir.log_path(model, split), lines, [e for _, e in chosen]))
    for path in shard_paths:  # only after the merged log is safely in place
        path.unlink()
        score_index.index_path(path).unlink(missing_ok=True)
    return True


def merge_run(run: StoredRun, samples: dict[str, list[Sample]], render: bool, reuse: bool = False,
              data: Mapping[str, str] | None = None, resume: Mapping[str, Any] | None = None) -> RunOutcome:
    """Merge shard logs where every sample is covered; write results once all are merged. ``data``:
    each split's current data digest (from the manifest's suite and data root when None)."""
    run_dir, suite = run.dir, run.suite
    pending = []
    missing = 0
    version = scoring_version(suite.conventions)
    with updating(run_dir) as m:
        manifest = m.doc
        check_current(run_dir, manifest, suite.conventions, data=data)  # merged logs and results hold only current scores
        # Every log is current now, so a merged log will be too: its version is recorded before it is
        # written, so a kill in between never leaves a log without one.
        merged = [(model, s) for model, status in manifest.get("status", {}).items() for s in status if run_dir.shard_logs(model, s)]
        for model, split in merged:
            m.record_version(run_dir, run_dir.log_path(model, split), version)
        if merged:
            m.checkpoint()
        for model, status in manifest.get("status", {}).items():
            for split in status:
                if split not in samples:
                    continue
                have, total = coverage(run_dir, model, split, samples[split])
                if have < total:
                    error = (manifest.get("models", {}).get(model) or {}).get("error")  # a rank that could not load it
                    pending.append(f"{model} {split}: {total - have} of {total} missing" + (f" ({error})" if error else ""))
                    missing += total - have
                    continue
                for path in run_dir.shard_logs(model, split):
                    m.forget_version(run_dir, path)
                merge_split(run_dir, model, split, samples[split])
                m.mark_merged(model, split)
    run.manifest = manifest
    if pending:
        return RunOutcome(run_dir.root, None, None,
                          pending=f"{missing} sample{'s' if missing != 1 else ''} still without predictions ({'; '.join(pending)})")
    return finish(run, samples, render, reuse=reuse, resume=resume)


def merge_and_report(run_dir: Path, data_root: Path | None = None, render: bool = True) -> RunOutcome:
    """Merge shard logs (ids checked against each split), then results and report."""
    run, samples = reopen(run_dir, data_root)
    data = run.data_digests()
    return merge_run(run, samples, render, data=data, resume=resume_inputs(data, run.limit, run.data_root))
