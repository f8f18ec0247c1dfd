"""results.json from the stored logs: metrics per model x split (schema in harness/score/schema.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.data.suites import Suite
from harness.files import write_json_atomic
from harness.records.store import RunDir, iter_records
from harness.score.metrics import summarize
from harness.score.reasoning import REASONING_VERSION, Tally
from harness.score.schema import SCHEMA_NAME, SCHEMA_VERSION, Results
from harness.score.slices import SLICES_VERSION, assign, load_slices, slice_metrics
from harness.types import Sample, SampleScore


def split_result(records: Iterable[dict[str, Any]], samples: list[Sample], suite: Suite, bootstrap_rounds: int) -> dict[str, Any]:
    """Metrics of one model on one split, over the split's samples in their order.

    Only each record's small score is kept (the masks are not needed once scored). Records of
    ids that are not in the split (e.g. beyond a smaller ``--limit``) are ignored.
    """
    return summarize_split(split_scores(records, samples), samples, suite, bootstrap_rounds)


def split_scores(records: Iterable[dict[str, Any]], samples: list[Sample]) -> dict[str, SampleScore]:
    """id -> score of the records whose ids are in the split (last write wins, as on resume)."""
    wanted = {s.id for s in samples}
    return {r["id"]: SampleScore.from_json(r["score"]) for r in records if r["id"] in wanted}


def summarize_split(by_id: dict[str, SampleScore], samples: list[Sample], suite: Suite, bootstrap_rounds: int) -> dict[str, Any]:
    scores = [by_id[s.id] for s in samples if s.id in by_id]
    res = summarize(scores, suite.conventions, bootstrap_rounds=bootstrap_rounds)
    res["n_expected"] = len(samples)
    res["complete"] = len(scores) == len(samples)
    return res


def compute_results(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int = 1000) -> Results:
    manifest = run_dir.manifest() or {}
    results: dict[str, dict[str, Any]] = {}
    defs = load_slices(suite)
    # Slice membership depends on the samples only: computed once per split, shared by every model.
    membership = {split: assign(ss, defs) for split, ss in samples.items()}
    sliced: dict[str, dict[str, Any]] = {}
    reasoning: dict[str, dict[str, Any]] = {}
    for model, status in manifest.get("status", {}).items():
        for split in status:
            if split in samples:
                tally = Tally(s.id for s in samples[split])  # the text answers' facts, from the same single read
                by_id = split_scores(tally.tap(iter_records(run_dir.log_path(model, split))), samples[split])
                results.setdefault(model, {})[split] = summarize_split(by_id, samples[split], suite, bootstrap_rounds)
                sliced.setdefault(model, {})[split] = slice_metrics(by_id, samples[split], defs, suite.conventions,
                                                                    bootstrap_rounds, membership[split])
                worth = tally.result(by_id, samples[split], suite.conventions, bootstrap_rounds, defs.min_n)
                if worth is not None:
                    reasoning.setdefault(model, {})[split] = worth
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
        "slices": {"version": SLICES_VERSION, "definitions": defs.to_json(), "results": sliced},
        "reasoning": {"version": REASONING_VERSION, "results": reasoning},
    }


def write_results(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int = 1000) -> Results:
    data = compute_results(run_dir, suite, samples, bootstrap_rounds)
    write_json_atomic(run_dir.results_path, data)
    return data
