"""results.json from the stored logs: metrics per model x split (schema in harness/score/schema.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.data.suites import Suite
from harness.files import write_json_atomic
from harness.records.store import RunDir, iter_records
from harness.score.metrics import summarize
from harness.score.reasoning import ReasoningTap
from harness.score.schema import SCHEMA_NAME, SCHEMA_VERSION, Results
from harness.score.version import scoring_version
from harness.types import Sample, SampleScore


def split_result(records: Iterable[dict[str, Any]], samples: list[Sample], suite: Suite, bootstrap_rounds: int,
                 n_split: int | None = None, limited: bool = False) -> dict[str, Any]:
    """Metrics of one model on one split, over the split's samples in their order.

    Only each record's small score is kept (the masks are not needed once scored). Records of
    ids that are not in the split (e.g. beyond a smaller ``--limit``) are ignored. ``n_split`` is
    the whole split's size (``samples`` may be the first ``--limit`` of it); ``limited`` says the
    samples are a ``--limit`` cut where that size is not known (runs made before it was recorded).
    """
    wanted = {s.id for s in samples}
    by_id = {r["id"]: SampleScore.from_json(r["score"]) for r in records if r["id"] in wanted}
    scores = [by_id[s.id] for s in samples if s.id in by_id]
    res = summarize(scores, suite.conventions, bootstrap_rounds=bootstrap_rounds)
    res["n_expected"] = len(samples)
    # complete = the whole split, every sample predicted, none failed; else `incomplete` says why.
    if n_split is not None:
        res["n_split"] = n_split
        limited = n_split > len(samples)
    res["incomplete"] = [why for why, hit in (("limit", limited), ("missing", len(scores) < len(samples)),
                                              ("failed", bool(res.get("n_failed")))) if hit]
    res["complete"] = not res["incomplete"]
    return res


def compute_results(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int = 1000) -> Results:
    manifest = run_dir.manifest() or {}
    results: dict[str, dict[str, Any]] = {}
    sizes, limit = manifest.get("split_sizes") or {}, (manifest.get("config") or {}).get("limit")
    reasoning = ReasoningTap()  # what the text is worth, gathered during the one read of each log
    for model, status in manifest.get("status", {}).items():
        for split in status:
            if split in samples:
                path = run_dir.log_path(model, split)
                records = reasoning.tap(model, split, iter_records(path), samples[split], path)
                results.setdefault(model, {})[split] = split_result(
                    records, samples[split], suite, bootstrap_rounds, sizes.get(split),
                    limited=isinstance(limit, int) and limit > 0 and len(samples[split]) >= limit)
    # Only for models that write text: absent, not zeros, for mask-only runs (harness/score/reasoning.py).
    reasoning_block = reasoning.section(samples, suite.conventions, bootstrap_rounds, manifest)
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "unit": "percent",
        "run_id": str(manifest.get("run_id", run_dir.root.name)),
        "suite": suite.summary(),
        "conventions": suite.conventions.to_dict(),
        "scoring_version": scoring_version(suite.conventions),
        "models": {m: {k: v for k, v in e.items() if k != "config"} for m, e in manifest.get("models", {}).items()},
        "results": results,  # type: ignore[typeddict-item]
        "published": [p.to_dict() for p in suite.published],  # type: ignore[misc]
        **({"reasoning": reasoning_block} if reasoning_block else {}),  # type: ignore[typeddict-item]
    }


def write_results(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int = 1000) -> Results:
    data = compute_results(run_dir, suite, samples, bootstrap_rounds)
    write_json_atomic(run_dir.results_path, data)
    return data
