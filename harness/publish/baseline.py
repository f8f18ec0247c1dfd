"""Baselines: the numbers a gate compares a run against, small enough to commit.

``harness baseline save RUN --to FILE`` writes one JSON file::

    schema, schema_version      "harness.baseline", 1
    from_run                    run id, git commit, creation time, --limit and scoring version of the
                                run it was saved from
    suite, conventions          name, version and fingerprint of the suite; the scoring conventions
    models                      adapter and model fingerprint per model
    results                     model -> split -> every metric of results.json (percent), readable
                                in a diff
    ids                         model -> split -> {"n", "sha256"} of the sorted sample ids
    scores                      per-sample scores for the paired bootstrap: model -> split ->
                                {ids, inter, union, iou, in_ciou} as compact JSON, zlib, base64
                                (absent with --metrics-only)

A run directory is read into the same ``Baseline`` shape (its results.json plus its logs), so
the gate compares a run with a baseline file or with another run alike. A plain results.json
also works as a baseline: metrics only, so the gate falls back to a plain tolerance. A run whose
scores are not from this harness's scoring code (harness/score/version.py) is refused.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.files import write_json_atomic
from harness.records.manifest import now
from harness.records.reader import StoredRun
from harness.records.results import ids_digest
from harness.records.store import RunDir, read_json
from harness.score.paired import PairScores
from harness.score.schema import SCHEMA_NAME as RESULTS_SCHEMA
from harness.score.schema import check_results

BASELINE_SCHEMA = "harness.baseline"
BASELINE_VERSION = 1
SCORES_ENCODING = "json+zlib+base64"


class BaselineError(HarnessError):
    """A baseline (file or run) that cannot be read; names the file."""


def baseline_ids(ids: Sequence[str]) -> dict[str, Any]:
    """The count and sha256 of a sorted id list: enough to tell two sample sets apart."""
    return {"n": len(ids), "sha256": ids_digest(ids)}


@dataclass(frozen=True)
class Baseline:
    """Metrics (and, where known, per-sample scores) of models x splits under one suite."""

    where: str  # the file or run directory it was read from, for messages
    suite: dict[str, Any]
    conventions: dict[str, Any]
    models: dict[str, dict[str, Any]]
    results: dict[str, dict[str, dict[str, Any]]]
    ids: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    scores: dict[str, dict[str, PairScores]] = field(default_factory=dict)
    from_run: dict[str, Any] = field(default_factory=dict)

    def pairs(self) -> list[tuple[str, str]]:
        return [(m, s) for m, by_split in self.results.items() for s in by_split]

    def select(self, models: Sequence[str] | None = None, splits: Sequence[str] | None = None) -> Baseline:
        """Only the given models and splits (all when None)."""

        def keep(d: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
            return {
                m: {s: v for s, v in by.items() if splits is None or s in splits}
                for m, by in d.items()
                if models is None or m in models
            }

        return Baseline(self.where, self.suite, self.conventions, self.models, keep(self.results), keep(self.ids),
                        keep(self.scores), self.from_run)

    def to_json(self, with_scores: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": BASELINE_SCHEMA,
            "schema_version": BASELINE_VERSION,
            "created": now(),
            "from_run": self.from_run,
            "suite": self.suite,
            "conventions": self.conventions,
            "models": self.models,
            "results": self.results,
            "ids": self.ids,
        }
        if with_scores and self.scores:
            payload = {m: {s: p.to_json() for s, p in by.items()} for m, by in self.scores.items()}
            raw = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
            out["scores"] = {"encoding": SCORES_ENCODING, "data": base64.b64encode(zlib.compress(raw, 9)).decode("ascii")}
        return out


def _suite_summary(suite: Mapping[str, Any]) -> dict[str, Any]:
    return {k: suite[k] for k in ("name", "version", "fingerprint", "protocol") if k in suite}


def from_run(run_dir: Path, verify: int | str | None = "none") -> Baseline:
    """A run directory's verified results plus its per-sample scores (harness/records/reader.py); with
    ``verify`` (lines per model x split, None for all), that many stored scores re-derived from their masks
    first. The reader's note on what was re-derived is in ``from_run["verified"]``."""
    run = StoredRun(run_dir)
    doc = run.results(intervals=verify is None)  # every number derived from the scores (--verify all: the intervals too)
    note = "" if verify == "none" else run.rederive(verify if isinstance(verify, int) else None)
    manifest = run.manifest
    results = {m: {s: dict(r) for s, r in by.items()} for m, by in doc["results"].items()}
    scores: dict[str, dict[str, PairScores]] = {}
    ids: dict[str, dict[str, dict[str, Any]]] = {}
    for model, by_split in results.items():
        for split in by_split:
            pair = run.pair_scores(model, split)
            scores.setdefault(model, {})[split] = pair
            ids.setdefault(model, {})[split] = baseline_ids(pair.ids)
    models: dict[str, dict[str, Any]] = {
        m: {k: e[k] for k in ("adapter", "fingerprint") if k in e} for m, e in doc.get("models", {}).items()
    }
    return Baseline(
        where=str(run_dir),
        suite=_suite_summary(doc["suite"]),
        conventions=dict(doc["conventions"]),
        models=models,
        results=results,
        ids=ids,
        scores=scores,
        from_run={"run_id": doc.get("run_id"), "git_commit": manifest.get("git_commit"), "created": manifest.get("created"),
                  # a --limit run covers only the first N samples of each split: the gate must know
                  "limit": (manifest.get("config") or {}).get("limit"), "scoring_version": doc.get("scoring_version"),
                  **({"verified": note} if note else {})},
    )


def _decode_scores(blob: Any, where: str) -> dict[str, dict[str, PairScores]]:
    if blob is None:
        return {}
    try:
        if blob.get("encoding") != SCORES_ENCODING:
            raise ValueError(f"unknown encoding {blob.get('encoding')!r}")
        payload = json.loads(zlib.decompress(base64.b64decode(blob["data"])))
        return {m: {s: PairScores.from_json(p) for s, p in by.items()} for m, by in payload.items()}
    except (AttributeError, KeyError, TypeError, ValueError, zlib.error) as exc:
        raise BaselineError(f"{where}: the per-sample scores cannot be decoded ({exc})") from exc


def from_file(path: Path) -> Baseline:
    """A baseline file written by ``harness baseline save``, or a results.json (metrics only)."""
    data = read_json(path)
    if isinstance(data, dict) and data.get("schema") == RESULTS_SCHEMA:
        if RunDir.is_run(path.parent):  # the results.json of a run: read and verified as the run
            return from_run(path.parent)
        doc = check_results(data, str(path))
        return Baseline(str(path), _suite_summary(doc["suite"]), dict(doc["conventions"]), dict(doc.get("models", {})),
                        {m: {s: dict(r) for s, r in by.items()} for m, by in doc["results"].items()},
                        from_run={"run_id": doc.get("run_id")})
    if not isinstance(data, dict) or data.get("schema") != BASELINE_SCHEMA:
        raise BaselineError(f"{path}: not a harness baseline (schema {BASELINE_SCHEMA!r}) nor a results.json")
    if data.get("schema_version") != BASELINE_VERSION:
        raise BaselineError(f"{path}: baseline schema_version {data.get('schema_version')!r}, this harness reads {BASELINE_VERSION}")
    for key in ("suite", "conventions", "results"):
        if not isinstance(data.get(key), dict):
            raise BaselineError(f"{path}: field {key!r} missing or not a mapping")
    return Baseline(
        where=str(path),
        suite=data["suite"],
        conventions=data["conventions"],
        models=data.get("models") or {},
        results=data["results"],
        ids=data.get("ids") or {},
        scores=_decode_scores(data.get("scores"), str(path)),
        from_run=data.get("from_run") or {},
    )


def load(path: Path, verify: int | str | None = "none") -> Baseline:
    """A run directory (read and verified, see ``from_run``) or a baseline/results file."""
    if path.is_dir():
        return from_run(path, verify)
    if not path.exists():
        raise BaselineError(f"baseline {path} does not exist")
    return from_file(path)


def save(run_dir: Path, to: Path, models: Sequence[str] | None = None, splits: Sequence[str] | None = None,
         with_scores: bool = True) -> Baseline:
    base = from_run(run_dir).select(models, splits)
    if not base.pairs():
        raise BaselineError(f"{run_dir}: no results for the chosen models and splits")
    write_json_atomic(to, base.to_json(with_scores=with_scores))
    return base
