"""The scoring version: which scoring code and conventions produced the scores stored in a log.

A log line's ``score`` is derived from its ``prediction`` and the suite's ground truth; it is
never more trusted than the mask it came from. So every log is recorded in the manifest
(``scoring_versions``: ``"<model>/<log file>" -> version``) with the version it was scored
under, ``results.json`` says which version its numbers come from, and ``harness report``,
``merge`` and ``gate`` refuse logs scored under another version than the running code's:
``harness rescore RUN`` recomputes them from the stored masks.

The version is a fingerprint of behaviour, not of source text: the conventions, a revision
number bumped by hand, and the exact SampleScores of a few hand-built masks (failures, empty
unions, ignore pixels, overlapping polygons, boxes) scored by the code that is running. A
change that alters any of those scores changes the version without anyone remembering to bump
it; a refactor that changes none keeps old runs valid.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness import masks
from harness.data.conventions import Conventions
from harness.errors import HarnessError
from harness.records.store import RunDir
from harness.score.scoring import score_sample
from harness.types import GroundTruth, ParseStatus, Prediction

# Bump when scoring changes in a way the probe below might not see (e.g. a new SampleScore field).
SCORING_REVISION = 1
MANIFEST_KEY = "scoring_versions"


class ScoringVersionError(HarnessError):
    """Stored scores were computed by other scoring code or conventions than the running harness's."""


class DataChangedError(ScoringVersionError):
    """Stored scores were computed against other ground truth than the split's current data (its
    annotation files changed since): as untrustworthy as scores of other scoring code."""


def _rect(rows: slice, cols: slice, h: int = 6, w: int = 8) -> masks.RLE:
    a = np.zeros((h, w), dtype=np.uint8)
    a[rows, cols] = 1
    return masks.encode(a)


def _probe_cases() -> list[tuple[Prediction, GroundTruth, bool]]:
    """Hand-built predictions and ground truths that reach every branch of score_sample."""
    target = GroundTruth(mask=_rect(slice(1, 4), slice(1, 5)), box=(1.0, 1.0, 5.0, 4.0),
                         ignore=_rect(slice(5, 6), slice(0, 8)), overlap=_rect(slice(2, 3), slice(2, 4)))
    plain = GroundTruth(mask=_rect(slice(0, 3), slice(0, 3)))
    nothing = GroundTruth(mask=masks.empty(6, 8))
    ok, failed = ParseStatus.OK, ParseStatus.FAILED
    pairs = [
        (Prediction(mask=_rect(slice(0, 3), slice(2, 7)), box=(2.0, 0.0, 7.0, 3.0), parse_status=ok), target),  # overlap pixels
        (Prediction(mask=_rect(slice(3, 6), slice(0, 3))), target),  # over ignore pixels, no box
        (Prediction(mask=_rect(slice(1, 4), slice(1, 5)), box=(-1.0, 1.0, 5.0, 4.0)), target),  # a bad box (the box rule)
        (Prediction(mask=None, parse_status=failed, error="probe"), target),  # a failure on a target
        (Prediction(mask=_rect(slice(1, 2), slice(1, 2))), plain),
        (Prediction(mask=masks.empty(6, 8)), nothing),  # empty union
        (Prediction(mask=_rect(slice(0, 1), slice(0, 8))), nothing),  # a mask where there is no target
        (Prediction(mask=None, error="probe"), nothing),  # a failure on no target
    ]
    # The third element is the dataset's no-target flag: the empty-union rules read it, not the area.
    cases = [(pred, gt, gt is nothing) for pred, gt in pairs]
    cases.append((Prediction(mask=masks.empty(6, 8)), nothing, False))  # a targeted sample whose target is empty
    return cases


@functools.lru_cache(maxsize=16)
def scoring_version(conv: Conventions) -> str:
    """``<revision>:<12 hex>``: the same in every process for the same code and conventions."""
    probe = [score_sample(pred, gt, conv, no_target).to_json() for pred, gt, no_target in _probe_cases()]
    payload = {"revision": SCORING_REVISION, "conventions": conv.to_dict(), "probe": probe}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{SCORING_REVISION}:{digest[:12]}"


def log_key(run_dir: RunDir, path: Path) -> str:
    """How a log is named in the manifest's ``scoring_versions``: ``<model>/<file>``."""
    return path.relative_to(run_dir.root).as_posix()


def record_version(manifest: dict[str, Any], run_dir: RunDir, path: Path, version: str) -> None:
    """Say in the manifest that the log at ``path`` holds (or will hold) scores of ``version``."""
    manifest.setdefault(MANIFEST_KEY, {})[log_key(run_dir, path)] = version


def forget_version(manifest: dict[str, Any], run_dir: RunDir, path: Path) -> None:
    manifest.get(MANIFEST_KEY, {}).pop(log_key(run_dir, path), None)


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
    recorded = manifest.get(MANIFEST_KEY) or {}
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


def record_data(manifest: dict[str, Any], split: str, digest: str) -> None:
    manifest.setdefault(DATA_KEY, {})[split] = digest


def current_data(manifest: Mapping[str, Any], data_root: Path | None = None) -> dict[str, str]:
    """The current digest of each of the run's splits whose data can be read here (its suite file, or the
    built-in of its name, with the same fingerprint; its data root). A split whose data cannot be found
    is left out: a command that reads no ground truth (gate, leaderboard) still works on a copy of the
    run without the data, and cannot tell there whether it changed."""
    from harness.data.samples import make_source
    from harness.data.suites import load_suite

    recorded = manifest.get(DATA_KEY) or {}
    suite_info = manifest.get("suite") or {}
    if not recorded or not isinstance(suite_info, Mapping):
        return {}
    config = manifest.get("config") or {}
    root = data_root or (Path(str(config["data_root"])) if isinstance(config, Mapping) and config.get("data_root") else None)
    try:
        path = Path(str(suite_info.get("path", "")))
        suite = load_suite(str(path) if path.is_file() else str(suite_info.get("name")))
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
