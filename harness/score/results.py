"""results.json from the stored logs: metrics per model x split (schema in harness/score/schema.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.data.suites import Suite
from harness.files import write_json_atomic
from harness.records.score_index import IndexEntry, ScoreIndex
from harness.records.store import RunDir, StoreError, iter_records
from harness.score.metrics import ScoreArrays, summarize
from harness.score.reasoning import ReasoningTap
from harness.score.schema import SCHEMA_NAME, SCHEMA_VERSION, Results
from harness.score.slices import SLICES_VERSION, assign, load_slices, slice_metrics
from harness.score.version import scoring_version
from harness.types import Sample, SampleScore


def split_result(entries: Mapping[str, IndexEntry], samples: list[Sample], suite: Suite, bootstrap_rounds: int,
                 where: Path | None = None, n_split: int | None = None, limited: bool = False) -> dict[str, Any]:
    """Metrics of one model on one split, over the split's samples in their order.

    ``entries`` are the log's score index (id -> its last line), so no mask is read. Ids that
    are not in the split (e.g. beyond a smaller ``--limit``) are ignored. ``n_split`` is the
    whole split's size (``samples`` may be the first ``--limit`` of it); ``limited`` says the
    samples are a ``--limit`` cut where that size is not known (runs made before it was recorded).
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
    # complete = the whole split, every sample predicted, none failed; else `incomplete` says why.
    if n_split is not None:
        res["n_split"] = n_split
        limited = n_split > len(samples)
    res["incomplete"] = [why for why, hit in (("limit", limited), ("missing", len(rows) < len(samples)),
                                              ("failed", bool(res.get("n_failed")))) if hit]
    res["complete"] = not res["incomplete"]
    return res


def _drawn_scores(entries: Mapping[str, IndexEntry], samples: list[Sample]) -> dict[str, SampleScore]:
    """id -> score of the split's predicted samples (from the index; not-drawn ones are in no metric)."""
    out = {}
    for s in samples:
        e = entries.get(s.id)
        score = None if e is None else e.score
        if score is not None and not score.not_drawn:
            out[s.id] = score
    return out


def _writes_text(index: ScoreIndex, entries: Mapping[str, IndexEntry]) -> bool:
    """Whether this log's model writes text, from its first prediction that did not fail (one line
    read by offset): a mask-only model's log is never parsed whole for the reasoning block."""
    probe = next((e for e in entries.values() if not e.failed), None)
    if probe is None:
        return False
    rec = next(iter(index.read([probe])), {})
    text = (rec.get("prediction") or {}).get("text")
    return isinstance(text, str) and bool(text.strip())


def compute_results(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int = 1000) -> Results:
    manifest = run_dir.manifest() or {}
    results: dict[str, dict[str, Any]] = {}
    sizes, limit = manifest.get("split_sizes") or {}, (manifest.get("config") or {}).get("limit")
    defs = load_slices(suite)
    # Slice membership depends on the samples only: computed once per split, shared by every model.
    membership = {split: assign(ss, defs) for split, ss in samples.items()}
    sliced: dict[str, dict[str, Any]] = {}
    reasoning = ReasoningTap()  # what the text is worth, gathered during the one read of each log
    for model, status in manifest.get("status", {}).items():
        for split in status:
            if split in samples:
                path = run_dir.log_path(model, split)
                index = run_dir.index(path)
                entries = index.latest()
                results.setdefault(model, {})[split] = split_result(
                    entries, samples[split], suite, bootstrap_rounds, path, sizes.get(split),
                    limited=isinstance(limit, int) and limit > 0 and len(samples[split]) >= limit)
                sliced.setdefault(model, {})[split] = slice_metrics(
                    _drawn_scores(entries, samples[split]), samples[split], defs, suite.conventions, bootstrap_rounds, membership[split])
                if _writes_text(index, entries):  # only then is the whole log read, for the reasoning block
                    for _ in reasoning.tap(model, split, iter_records(path), samples[split], path):
                        pass
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
        "slices": {"version": SLICES_VERSION, "definitions": defs.to_json(), "results": sliced},
        **({"reasoning": reasoning_block} if reasoning_block else {}),  # type: ignore[typeddict-item]
    }


def write_results(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], bootstrap_rounds: int = 1000) -> Results:
    data = compute_results(run_dir, suite, samples, bootstrap_rounds)
    write_json_atomic(run_dir.results_path, data)
    return data
