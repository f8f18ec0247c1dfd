"""The run manifest: what was run, with what, where, and how far it got.

Resuming into a run directory is allowed only when what identifies the numbers is the
same: the suite fingerprint (data, splits, conventions) and each model's adapter
fingerprint. Anything else would mix two experiments in one directory.

Every change goes through ``updating(run_dir)``: the manifest is read under its lock (ranks of a
sharded run share it), changed by the methods of ``Manifest`` (the only code that knows its keys'
shapes), stamped ``updated`` and written atomically. Readers take the plain document
(``StoredRun.manifest``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import harness
from harness.data.suites import Suite
from harness.errors import HarnessError
from harness.records import locks, versions
from harness.records.store import RunDir

MANIFEST_VERSION = 1
# The record of each split's data as loaded: {"found": images, objects, expressions of the whole split,
# "official": the suite's official counts} (harness.data.samples.split_counts, the suite's ``counts``).
COUNTS_KEY = "split_counts"
_VERSIONED = ("numpy", "pycocotools", "pillow", "jinja2", "matplotlib", "pandas", "torch", "transformers")


class RunConflictError(HarnessError):
    """The run directory holds results made under a different suite or model configuration."""


def fingerprint(obj: Any) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    out = {"harness": harness.__version__, "python": platform.python_version()}
    for name in _VERSIONED:
        if name in ("torch", "transformers") and name not in sys.modules:
            continue  # record model libraries only when a model actually used them
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """The harness checkout's commit (None for a wheel install or without git)."""
    root = Path(harness.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_manifest(run_id: str, suite: Suite, config: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id,
        "created": now(),
        "updated": now(),
        "suite": suite.summary(),
        "conventions": suite.conventions.to_dict(),
        "config": config,
        "argv": argv,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "splits": [],
        "models": {},
        "status": {},
    }


def holds_predictions(model_dir: Path) -> bool:
    """Whether a model's folder of a run holds any stored prediction (a non-empty log, shard logs included)."""
    return any(p.stat().st_size > 0 for p in model_dir.glob("*.jsonl")) if model_dir.is_dir() else False


def check_compatible(manifest: dict[str, Any], suite: Suite, models: dict[str, dict[str, Any]], where: Path) -> None:
    """Refuse to resume into a directory whose numbers came from something else."""
    old = manifest.get("suite", {}).get("fingerprint")
    if old != suite.fingerprint:
        raise RunConflictError(
            f"{where} holds a run of suite {manifest.get('suite', {}).get('name')!r} with fingerprint {old}, "
            f"not {suite.name!r} {suite.fingerprint} (data, splits or conventions changed); use another --out"
        )
    for name, entry in models.items():
        prev = manifest.get("models", {}).get(name)
        # A model that stored nothing (it could not start, or was stopped before its first sample)
        # has no numbers to mix with: the fixed command takes its place and runs it.
        if prev is not None and prev.get("fingerprint") != entry["fingerprint"] and holds_predictions(where / name):
            raise RunConflictError(
                f"{where}/{name} was produced with a different configuration of model {name!r} "
                f"({prev.get('config')} vs {entry['config']}); use another --out or remove {where / name}"
            )


def add_counters(before: Mapping[str, float], spent: Mapping[str, float]) -> dict[str, float]:
    """Counters of two stints on the same work (a run and its resume): sums add, ``peak_*`` take the max."""
    out = dict(before)
    for k, v in spent.items():
        out[k] = max(out.get(k, v), v) if k.startswith("peak_") else round(out.get(k, 0.0) + v, 6)
    return out


class Manifest:
    """The manifest document with its changes as methods. ``rank`` is a shard's ``i-of-n``, or ``all``
    for an unsharded run."""

    def __init__(self, doc: dict[str, Any], run_dir: RunDir | None = None) -> None:
        self.doc = doc
        self._run_dir = run_dir  # where ``checkpoint`` writes (set by ``updating``)

    def checkpoint(self) -> None:
        """Write the manifest now, still under the lock, before a step that must find it written
        (a merged log's scoring version before the log itself)."""
        assert self._run_dir is not None, "checkpoint() is for a manifest opened by updating()"
        self.doc["updated"] = now()
        self._run_dir.write_manifest(self.doc)

    def add_event(self, event: str, **fields: Any) -> None:
        """Something a reader of the report should know happened (interrupted, could_not_run, oom_halved, ...)."""
        self.doc.setdefault("events", []).append({"at": now(), "event": event, **fields})

    def mark(self, model: str, split: str, rank: str, state: str) -> None:
        """One rank of model x split is ``running`` or ``done``. The split's own status turns ``done`` only
        unsharded; a sharded split's does when its merged log is complete (``mark_merged``)."""
        ranks = self.doc.setdefault("shards", {}).setdefault(model, {}).setdefault(split, {})
        if state == "running" and ranks.get(rank) == "running":
            # The caller holds this part's lock, so whoever marked it running is gone: it was killed.
            self.add_event("interrupted", model=model, split=split, shard=rank)
        ranks[rank] = state
        self.doc.setdefault("status", {}).setdefault(model, {})[split] = "done" if state == "done" and rank == "all" else "running"

    def mark_merged(self, model: str, split: str) -> None:
        self.doc["status"][model][split] = "done"

    def record_efficiency(self, model: str, split: str, rank: str, counters: Mapping[str, float], runtime: dict[str, Any]) -> None:
        """The model's efficiency counters on this split (per rank), added to earlier stints', and where it ran."""
        entry = self.doc["models"][model]
        ranks = entry.setdefault("efficiency", {}).setdefault(split, {})
        # A resumed (or retried) run adds its share to what earlier commands spent, never replaces it.
        ranks[rank] = add_counters(ranks.get(rank) or {}, counters)
        entry["runtime"] = runtime

    def set_load_errors(self, model: str, errors: Mapping[str, str]) -> None:
        """Each rank's load error and ``error``, the one line every reader shows; none clears them."""
        entry = self.doc["models"][model]
        entry.pop("load_errors", None)
        entry.pop("error", None)
        if errors:
            entry["load_errors"] = dict(errors)
            entry["error"] = "; ".join(f"could not load{'' if k == 'all' else f' on rank {k}'}: {v}" for k, v in sorted(errors.items()))

    def record_load_error(self, model: str, rank: str, reason: str) -> None:
        """A model that failed to load on ``rank``: said until a later command (on that rank) runs it."""
        self.set_load_errors(model, {**(self.doc["models"][model].get("load_errors") or {}), rank: reason})
        self.add_event("could_not_run", model=model, reason=reason, **({} if rank == "all" else {"shard": rank}))

    def record_version(self, run_dir: RunDir, log_path: Path, version: str) -> None:
        """The log at ``log_path`` holds (or will hold) scores of scoring ``version``."""
        self.doc.setdefault(versions.SCORING_VERSIONS_KEY, {})[versions.log_key(run_dir, log_path)] = version

    def forget_version(self, run_dir: RunDir, log_path: Path) -> None:
        self.doc.get(versions.SCORING_VERSIONS_KEY, {}).pop(versions.log_key(run_dir, log_path), None)

    def record_data(self, split: str, digest: str) -> None:
        """The split's logs hold scores against the ground truth of data digest ``digest``."""
        self.doc.setdefault(versions.DATA_KEY, {})[split] = digest

    def record_data_counts(self, sizes: Mapping[str, int], stated: Mapping[str, Any]) -> None:
        """Each split's size (what a ``--limit`` run is part of) and its found against official counts."""
        self.doc["split_sizes"] = {**(self.doc.get("split_sizes") or {}), **sizes}
        self.doc[COUNTS_KEY] = {**(self.doc.get(COUNTS_KEY) or {}), **stated}


@contextmanager
def updating(run_dir: RunDir) -> Iterator[Manifest]:
    """Read-modify-write of the manifest under its lock; written (stamped ``updated``) when the block ends
    without an exception, left as it was otherwise."""
    with locks.waiting(run_dir.manifest_lock_path):
        manifest = Manifest(run_dir.manifest() or {}, run_dir)
        yield manifest
        manifest.doc["updated"] = now()
        run_dir.write_manifest(manifest.doc)
