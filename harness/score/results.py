"""results.json from the stored logs: metrics per model x split (schema in harness/score/schema.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.data.suites import Suite
from harness.files import write_json_atomic
from harness.records.score_index import IndexEntry
from harness.records.store import RunDir, StoreError
from harness.score.metrics import ScoreArrays, summarize
from harness.score.schema import SCHEMA_NAME, SCHEMA_VERSION, Results
from harness.types import Sample


def split_result(entries: Mapping[str, IndexEntry], samples: list[Sample], suite: Suite, bootstrap_rounds: int,
                 where: Path | None = None) -> dict[str, Any]:
    """Metrics of one model on one split, over the split's samples in their order.

    ``entries`` are the log's score index (id -> its last line), so no mask is read. Ids that
    are not in the split (e.g. beyond a smaller ``--limit``) are ignored.
    """
    rows = []
    for s in samples:
        entry = entries.get(s.id)
        if entry is None:
            continue
        if entry.row is None:
            raise StoreError(f"{where or 'log'}: the record of {s.id!r} has no usable score")
        rows.append(entry.row)
    res = summarize(ScoreArrays.of_rows(rows), suite.conventions, bootstrap_rounds=bootstrap_rounds)
    res["n_expected"] = len(samples)
    res["complete"] = len(rows) == len(samples)
    return res


def compute_results(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int = 1000) -> Results:
    manifest = run_dir.manifest() or {}
    results: dict[str, dict[str, Any]] = {}
    for model, status in manifest.get("status", {}).items():
        for split in status:
            if split in samples:
                path = run_dir.log_path(model, split)
                entries = run_dir.index(path).latest()
                results.setdefault(model, {})[split] = split_result(entries, samples[split], suite, bootstrap_rounds, path)
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "unit": "percent",
        "run_id": str(manifest.get("run_id", run_dir.root.name)),
        "suite": suite.summary(),
        "conventions": suite.conventions.to_dict(),
        "models": {m: {k: v for k, v in e.items() if k != "config"} for m, e in manifest.get("models", {}).items()},
        "results": results,  # type: ignore[typeddict-item]
        "published": [p.to_dict() for p in suite.published],  # type: ignore[misc]
    }


def write_results(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int = 1000) -> Results:
    data = compute_results(run_dir, suite, samples, bootstrap_rounds)
    write_json_atomic(run_dir.results_path, data)
    return data
