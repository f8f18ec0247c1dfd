"""results.json derived from a stored run: metrics per model x split (schema in harness/score/schema.py).

One derivation for the writer (``harness run``, ``report``, ``merge``, ``rescore`` write what it
gives) and the verifying reader (harness/records/reader.py recomputes it and refuses a results.json
that says anything else). Everything here is a function of the score index (no mask is read) and
of the manifest's record of the data (split sizes, counts found against the suite's official ones).
Rows enter the metrics in sample-id order, so the bootstrap intervals are a function of the stored
scores alone, whoever derives them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.data.conventions import Conventions
from harness.data.suites import COUNT_KEYS, Suite
from harness.records.manifest import COUNTS_KEY, fingerprint
from harness.records.score_index import IndexEntry
from harness.records.store import iter_records
from harness.score import cgf1
from harness.score.metrics import ScoreArrays, summarize
from harness.score.reasoning import ReasoningTap
from harness.score.schema import SCHEMA_NAME, SCHEMA_VERSION, Results
from harness.score.slices import SLICES_VERSION, assign, load_slices, slice_metrics
from harness.score.version import scoring_version
from harness.types import Sample, SampleScore

if TYPE_CHECKING:
    from harness.records.reader import StoredRun

def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of the sorted ids a split's numbers were computed over."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def data_standing(record: Mapping[str, Any] | None) -> tuple[bool, str]:
    """(short, text) of a split's data against the suite's official counts: ``(True, "4 of 200 images")``
    when the copy on disk has fewer, ``(False, "count unchecked")`` where the suite states none (or the
    run predates the record), ``(False, "200 of 200 images")`` when it is whole. ``record``: the
    manifest's ``split_counts`` entry of the split."""
    found, official = (record or {}).get("found"), (record or {}).get("official")
    stated = [(k, int(v)) for k, v in (official or {}).items() if k in COUNT_KEYS and v is not None]
    if not stated or not found:
        return False, "count unchecked"
    short = [(k, int(found.get(k, 0)), want) for k, want in stated if int(found.get(k, 0)) < want]
    if short:  # the first count short, in the order images, objects, expressions: "4 of 200 images"
        k, got, want = short[0]
        return True, f"{got} of {want} {k}"
    k, want = stated[0]
    return False, f"{int(found.get(k, 0))} of {want} {k}"


def split_result(entries: Mapping[str, IndexEntry], ids: Sequence[str], conv: Conventions, bootstrap_rounds: int,
                 n_expected: int, n_split: int | None, limited: bool, data: tuple[bool, str],
                 draws: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of one model on one split over ``ids`` (the split's samples, after ``--limit``) that have a
    stored line; ``n_expected`` samples were asked for, of a split of ``n_split`` (None: not recorded,
    then ``limited`` says whether this was a ``--limit`` cut); ``data`` is ``data_standing``. Where the
    suite scores instances, SA-Co's metrics too (harness/score/cgf1.py), from the same lines; ``draws``,
    when given, receives their bootstrap resamples (what a suite average's interval is made of)."""
    stored = [entries[i] for i in sorted(ids) if i in entries]
    rows = [e.row for e in stored]  # every row checked by the reader (never None)
    res = summarize(ScoreArrays.of_rows(rows), conv, bootstrap_rounds=bootstrap_rounds)  # type: ignore[arg-type]
    if conv.scoring == "instances":  # the pairs scored on instances, drawn (a not-drawn line has no match)
        res.update(cgf1.summarize([e.instances for e in stored if e.instances is not None], bootstrap_rounds, draws=draws))
    res["n_expected"] = n_expected
    if n_split is not None:
        res["n_split"] = n_split
        limited = n_split > n_expected
    short, text = data
    res["data"] = text
    # complete = the whole split, every sample predicted, none failed, and the data whole; else `incomplete` says why.
    res["incomplete"] = [why for why, hit in (("limit", limited), ("missing", len(rows) < n_expected),
                                              ("failed", bool(res.get("n_failed"))), ("data", short)) if hit]
    res["complete"] = not res["incomplete"]
    return res


def expected_counts(manifest: Mapping[str, Any], split: str) -> tuple[int | None, int | None, int | None, tuple[bool, str]]:
    """(n_expected, n_split, limit, data standing) of a split, from the manifest's record of its data
    (``split_sizes``, ``split_counts``) and the run's ``--limit``; n_expected None where not recorded."""
    size = (manifest.get("split_sizes") or {}).get(split)
    limit = (manifest.get("config") or {}).get("limit")
    limit = limit if isinstance(limit, int) and limit > 0 else None
    n_expected = None if size is None else (min(size, limit) if limit else size)
    return n_expected, size, limit, data_standing((manifest.get(COUNTS_KEY) or {}).get(split))


def _drawn_scores(entries: Mapping[str, IndexEntry], samples: list[Sample]) -> dict[str, SampleScore]:
    """id -> score of the split's predicted samples (from the index; not-drawn ones are in no metric)."""
    out = {}
    for s in samples:
        e = entries.get(s.id)
        score = None if e is None else e.score
        if score is not None and not score.not_drawn:
            out[s.id] = score
    return out


def _writes_text(run: StoredRun, model: str, split: str, entries: Mapping[str, IndexEntry]) -> bool:
    """Whether this log's model writes text, from its first prediction that did not fail (one line
    read by offset): a mask-only model's log is never parsed whole for the reasoning block."""
    probe = next((e for e in entries.values() if not e.failed), None)
    if probe is None:
        return False
    rec = next(iter(run.index(model, split).read([probe])), {})
    text = (rec.get("prediction") or {}).get("text")
    return isinstance(text, str) and bool(text.strip())


def source_digest(run: StoredRun, counted: Mapping[tuple[str, str], Sequence[str]]) -> dict[str, Any]:
    """What results.json is computed from: each log's size and sha256, the ids counted per model x split,
    the scoring version, the data digests, the conventions, the --limit and the bootstrap rounds."""
    conv = run.conventions
    return {
        "logs": run.log_digests([pair for pair in counted]),
        "ids": {f"{m}/{s}": ids_digest(ids) for (m, s), ids in counted.items()},
        "scoring_version": scoring_version(conv),
        "data": {s: d for s, d in (run.manifest.get("data") or {}).items() if any(s == sp for _, sp in counted)},
        "conventions": fingerprint(conv.to_dict()),
        "limit": (run.manifest.get("config") or {}).get("limit"),
        "bootstrap_rounds": run.bootstrap_rounds,
    }


def compute_results(run: StoredRun, suite: Suite, samples: dict[str, list[Sample]]) -> Results:
    """results.json of a run, from its score indexes, for the splits of ``samples``."""
    manifest = run.manifest
    bootstrap_rounds = run.bootstrap_rounds
    results: dict[str, dict[str, Any]] = {}
    defs = load_slices(suite)
    # Slice membership depends on the samples only: computed once per split, shared by every model.
    membership = {split: assign(ss, defs) for split, ss in samples.items()}
    sliced: dict[str, dict[str, Any]] = {}
    counted: dict[tuple[str, str], list[str]] = {}
    reasoning = ReasoningTap()  # what the text is worth, gathered during the one read of each log
    draws: dict[tuple[str, str], dict[str, Any]] = {}
    for model, split in run.asked():
        if split not in samples:
            continue
        entries = run.entries(model, split)
        ids = [s.id for s in samples[split]]
        _, n_split, limit, data = expected_counts(manifest, split)
        results.setdefault(model, {})[split] = split_result(
            entries, ids, suite.conventions, bootstrap_rounds, len(ids), n_split, bool(limit and len(ids) >= limit), data,
            draws.setdefault((model, split), {}))
        counted[(model, split)] = [i for i in ids if i in entries]
        sliced.setdefault(model, {})[split] = slice_metrics(
            _drawn_scores(entries, samples[split]), samples[split], defs, suite.conventions, bootstrap_rounds, membership[split])
        if _writes_text(run, model, split, entries):  # only then is the whole log read, for the reasoning block
            path = run.log_path(model, split)
            for _ in reasoning.tap(model, split, iter_records(path), samples[split], path):
                pass
    # Only for models that write text: absent, not zeros, for mask-only runs (harness/score/reasoning.py).
    reasoning_block = reasoning.section(samples, suite.conventions, bootstrap_rounds, manifest)
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "unit": "percent",
        "run_id": str(manifest.get("run_id", run.root.name)),
        "suite": suite.summary(),
        "conventions": suite.conventions.to_dict(),
        "scoring_version": scoring_version(suite.conventions),
        "models": {m: {k: v for k, v in e.items() if k != "config"} for m, e in manifest.get("models", {}).items()},
        "results": results,  # type: ignore[typeddict-item]
        "published": [p.to_dict() for p in suite.published],  # type: ignore[misc]
        "slices": {"version": SLICES_VERSION, "definitions": defs.to_json(), "results": sliced},
        **({"reasoning": reasoning_block} if reasoning_block else {}),  # type: ignore[typeddict-item]
        **({"average": average_block(suite.average, results, draws)} if suite.average else {}),  # type: ignore[typeddict-item]
        "source": source_digest(run, counted),  # type: ignore[typeddict-item]
    }


def average_block(splits: Sequence[str], results: Mapping[str, Mapping[str, Mapping[str, Any]]],
                  draws: Mapping[tuple[str, str], Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A suite's average over ``splits`` (SA-Co/Gold's "Average": the plain mean of its subsets' instance
    metrics; harness/score/cgf1.py): per model that has every one of them, with intervals where ``draws``
    (model, split) -> resamples are given. A model short of a split has no average."""
    out: dict[str, Any] = {}
    for model, by_split in results.items():
        if all(s in by_split for s in splits):
            found = [draws.get((model, s)) or {} for s in splits] if draws is not None else None
            out[model] = cgf1.average([by_split[s] for s in splits], found)
    return {"splits": list(splits), "results": out}



def reference_models(doc: Mapping[str, Any]) -> frozenset[str]:
    """The models of a results.json that are reference lines (``empty``, ``full``, oracles), not models
    to rank: their run recorded ``AdapterInfo.reference``. Reports and leaderboards band them apart."""
    return frozenset(m for m, e in (doc.get("models") or {}).items() if isinstance(e, Mapping) and e.get("reference"))
