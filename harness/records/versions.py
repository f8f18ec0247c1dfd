"""Which scoring code and which ground truth the stored scores of a run came from, and the check
that refuses anything else.

A log line's ``score`` is derived from its ``prediction`` and the suite's ground truth; it is
never more trusted than the mask it came from. So every log is recorded in the manifest
(``scoring_versions``: ``"<model>/<log file>" -> version``, harness/score/version.py) with the
version it was scored under, and ``data``: split -> the data digest of the ground truth it was
scored against. Every reader of a run (harness/records/reader.py) refuses logs scored under
another version than the running code's, or against other ground truth: ``harness rescore RUN``
recomputes them from the stored masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.data.conventions import Conventions
from harness.errors import HarnessError
from harness.records.store import RunDir
from harness.score.version import scoring_version

SCORING_VERSIONS_KEY = "scoring_versions"  # the manifest's scoring version of each log (docs/glossary.md)


class ScoringVersionError(HarnessError):
    """Stored scores were computed by other scoring code or conventions than the running harness's."""


class DataChangedError(ScoringVersionError):
    """Stored scores were computed against other ground truth than the split's current data (its
    annotation files changed since): as untrustworthy as scores of other scoring code."""


def log_key(run_dir: RunDir, path: Path) -> str:
    """How a log is named in the manifest's ``scoring_versions``: ``<model>/<file>``."""
    return path.relative_to(run_dir.root).as_posix()


def run_logs(run_dir: RunDir, *by_model: Mapping[str, Any] | None) -> list[tuple[str, str, Path]]:
    """(model, split, path) of every non-empty log of the models x splits named (the manifest's
    ``status``, a results.json's ``results``): each split's log and its shard logs."""
    pairs = dict.fromkeys((m, s) for d in by_model for m, splits in (d or {}).items() for s in splits)
    out = []
    for model, split in pairs:
        for path in (run_dir.log_path(model, split), *run_dir.shard_logs(model, split)):
            if path.is_file() and path.stat().st_size > 0:
                out.append((model, split, path))
    return out


def _described(version: Any) -> str:
    return f"version {version}" if version else "an unknown version (none recorded: scored before scoring versions existed)"


def stale_logs(run_dir: RunDir, manifest: Mapping[str, Any], current: str, results: Mapping[str, Any] | None = None) -> list[str]:
    """``"<model>/<file> scored under ..."`` for every log of the run (and of ``results``) not
    recorded as scored under ``current``."""
    recorded = manifest.get(SCORING_VERSIONS_KEY) or {}
    logs = run_logs(run_dir, manifest.get("status"), (results or {}).get("results"))
    return [f"{log_key(run_dir, path)} scored under {_described(recorded.get(log_key(run_dir, path)))}"
            for _, _, path in logs if recorded.get(log_key(run_dir, path)) != current]


def check_current(run_dir: RunDir, manifest: Mapping[str, Any], conv: Conventions, results: Mapping[str, Any] | None = None,
                  data: Mapping[str, str] | None = None) -> None:
    """Refuse, naming the command that fixes it, a run whose stored scores (or, when given, whose
    results.json) were computed under another scoring version than this harness's, or against
    other ground truth than the current data (``data``: each split's current digest; when None it
    is computed from the manifest's suite and data root where that data can be read)."""
    check_data(run_dir, manifest, current_data(manifest) if data is None else data, results)
    current = scoring_version(conv)
    stale = stale_logs(run_dir, manifest, current, results)
    if results is not None and results.get("scoring_version") != current:
        stale.append(f"results.json computed under {_described(results.get('scoring_version'))}")
    if stale:
        shown = "; ".join(stale[:5]) + (f"; and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise ScoringVersionError(
            f"{run_dir.root}: stored scores are not from this harness's scoring (version {current}): {shown}. "
            f"Run `harness rescore {run_dir.root}` to recompute every score from its stored mask"
        )


# -- the data each split was scored against -------------------------------------------------------
#
# ``manifest["data"]``: split -> the data digest (harness.data.sources.Source.data_digest) of the
# ground truth its logs were scored against, recorded when the split is first scored and again by
# `harness rescore`. A split whose logs hold predictions and whose current digest differs is refused:
# its scores (and the numbers made of them) describe annotations that no longer exist.
DATA_KEY = "data"


def current_data(manifest: Mapping[str, Any], data_root: Path | None = None) -> dict[str, str]:
    """The current digest of each of the run's splits whose data can be read here (its suite file, or the
    built-in of its name, with the same fingerprint; its data root). A split whose data cannot be found
    is left out: a command that reads no ground truth (gate, leaderboard) still works on a copy of the
    run without the data, and cannot tell there whether it changed."""
    from harness.data.samples import make_source
    from harness.data.suites import stored_suite

    recorded = manifest.get(DATA_KEY) or {}
    suite_info = manifest.get("suite") or {}
    if not recorded or not isinstance(suite_info, Mapping):
        return {}
    config = manifest.get("config") or {}
    root = data_root or (Path(str(config["data_root"])) if isinstance(config, Mapping) and config.get("data_root") else None)
    try:
        suite = stored_suite(dict(suite_info))
        if suite.fingerprint != suite_info.get("fingerprint"):
            return {}
        source, out = make_source(suite, root), {}
        for split in recorded:
            try:
                out[split] = source.data_digest(split)
            except (HarnessError, OSError):
                continue
        return out
    except (HarnessError, OSError):
        return {}


def stale_data(run_dir: RunDir, manifest: Mapping[str, Any], current: Mapping[str, str],
               results: Mapping[str, Any] | None = None) -> list[str]:
    """The splits holding stored predictions whose recorded data digest is not the current one. A split
    with no digest recorded (a run older than data digests) is not refused: there is nothing to compare."""
    recorded = manifest.get(DATA_KEY) or {}
    held = dict.fromkeys(split for _, split, _ in run_logs(run_dir, manifest.get("status"), (results or {}).get("results")))
    return [s for s in held if s in recorded and s in current and recorded[s] != current[s]]


def check_data(run_dir: RunDir, manifest: Mapping[str, Any], current: Mapping[str, str],
               results: Mapping[str, Any] | None = None) -> None:
    stale = stale_data(run_dir, manifest, current, results)
    if stale:
        names = ", ".join(repr(s) for s in stale)
        raise DataChangedError(
            f"{run_dir.root}: the annotation data of split{'s' if len(stale) > 1 else ''} {names} changed since "
            f"{'their' if len(stale) > 1 else 'its'} logs were scored (data digest "
            + "; ".join(f"{s}: {(manifest.get(DATA_KEY) or {})[s]} then, {current[s]} now" for s in stale)
            + f"): the stored scores describe other ground truth. Run `harness rescore {run_dir.root}` to recompute "
            "every score against the current ground truth"
        )
