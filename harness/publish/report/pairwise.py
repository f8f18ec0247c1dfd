"""The report's answer and its pairwise views: the headline, a heat map of paired differences per split and
metric, and per-slice differences of the pairs that matter.

Every number comes from one computation, ``harness.publish.compare.pair_rows`` (the paired bootstrap of
``harness compare``, seed 0), run once per pair of models per split over the score index the report has
already read. A pair is computed in the report's model order; the other orientation is the same resamples
negated (an interval's ends swap and change sign, p is two-sided), so ``harness compare RUN --models A,B``
prints what the report shows for B − A.

Reference lines (``empty``, ``full``, oracles: ``AdapterInfo.reference``, read with
``harness.records.results.reference_models``) are never the best model and a pair of two of them is never
computed: comparing two baselines tells a reader nothing.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness.publish.compare import ALL, LABELS, METRICS, Comparison, Difference, metrics_of, pair_rows
from harness.publish.standing import is_clean, partial_text
from harness.score.paired import DEFAULT_ROUNDS, PairScores, p_text
from harness.score.slices import SliceError, SliceSet, assign
from harness.types import Sample

DASH = "–"


def oriented(d: Difference, first: str, second: str) -> Difference:
    """``d`` as ``first − second`` (``Difference`` holds b − a: here b = first, a = second)."""
    if (d.a, d.b) == (second, first):
        return d
    if (d.a, d.b) != (first, second):
        raise ValueError(f"{d.a} vs {d.b} is not a row of {first} and {second}")
    return replace(d, a=second, b=first, a_value=d.b_value, b_value=d.a_value, delta=-d.delta,
                   ci_lo=None if d.ci_hi is None else -d.ci_hi, ci_hi=None if d.ci_lo is None else -d.ci_lo)


def significant(d: Difference) -> bool:
    """The 95% interval excludes 0 (so p < 0.05: the p-value inverts the same percentile interval)."""
    return d.ci_lo is not None and d.ci_hi is not None and (d.ci_lo > 0 or d.ci_hi < 0)


@dataclass
class SplitPairs:
    """The paired differences of one split: every pair of its models but pairs of two reference lines."""

    split: str
    models: list[str]  # the models with scores on the split, report order
    rows: list[Difference]
    notes: list[str]
    metrics: tuple[str, ...] = METRICS  # what the split is compared on, its suite's official metric first (compare.metrics_of)

    def between(self, first: str, second: str, family: str = ALL, label: str = ALL) -> dict[str, Difference]:
        """metric -> the difference ``first − second`` on the whole split (or one slice)."""
        out = {}
        for d in self.rows:
            if {d.a, d.b} == {first, second} and d.family == family and d.slice == label:
                out[d.metric] = oriented(d, first, second)
        return out

    def pair(self, first: str, second: str) -> list[Difference]:
        """Every row (whole split, then slices) of ``first − second``."""
        return [oriented(d, first, second) for d in self.rows if {d.a, d.b} == {first, second}]


def compute(doc: Mapping[str, Any], pair_scores: Mapping[str, Mapping[str, PairScores]], models: Sequence[str],
            splits: Sequence[str], samples: Mapping[str, Mapping[str, Sample]] | None, reference: Collection[str],
            rounds: int = DEFAULT_ROUNDS) -> tuple[list[SplitPairs], list[str]]:
    """The paired differences of every split with two models or more (slices where the samples are given)."""
    eps = float((doc.get("conventions") or {}).get("ciou_eps", 1e-10))
    metrics = metrics_of(doc.get("conventions") or {})
    defs = None
    notes: list[str] = []
    try:
        if (doc.get("slices") or {}).get("definitions"):
            defs = SliceSet.from_json(doc["slices"]["definitions"])
    except SliceError as exc:
        notes.append(f"Pairwise slices left out: {exc}")
    out = []
    for split in splits:
        have = [m for m in models if split in pair_scores.get(m, {}) and pair_scores[m][split].ids]
        if len(have) < 2:
            continue
        membership: dict[str, dict[str, set[str]]] = {}
        if defs is not None and samples is not None and split in samples:
            ordered = list(samples[split].values())
            membership = {f: {lab: {ordered[i].id for i in mask.nonzero()[0]} for lab, mask in by.items()}
                          for f, by in assign(ordered, defs).items()}
        comparison = Comparison(rounds=rounds)
        scores = {m: pair_scores[m][split] for m in have}
        for i, a in enumerate(have):
            for b in have[i + 1:]:
                if a in reference and b in reference:
                    continue
                pair_rows(a, scores[a], b, scores[b], split, membership, eps, defs.min_n if defs else 2, rounds, metrics, comparison)
        out.append(SplitPairs(split, have, comparison.rows, comparison.notes, metrics))
    return out, notes


def _signed(v: float | None) -> str:
    if v is None or math.isnan(v):
        return DASH
    text = f"{v:+.1f}"
    return "+0.0" if text == "-0.0" else text  # a value that rounds to 0 has no sign to show


def _value(v: float | None) -> str:
    return DASH if v is None or math.isnan(v) else f"{v:.1f}"


def _claim(d: Difference, rounds: int) -> dict[str, Any]:
    """``d`` (first − second) as the headline and the tables print it."""
    return {"first": d.b, "second": d.a, "first_value": _value(d.b_value), "second_value": _value(d.a_value),
            "delta": _signed(d.delta), "ci": DASH if d.ci_lo is None else f"[{_signed(d.ci_lo)}, {_signed(d.ci_hi)}]",
            "p": p_text(d.p, rounds), "n": d.n, "significant": significant(d), "interval": d.ci_lo is not None}


def ranked(results: Mapping[str, Mapping[str, Mapping[str, Any]]], candidates: Sequence[str], split: str, metric: str) -> list[str]:
    """The candidates with a value on the split, best first: complete numbers before partial or failing ones
    (as the leaderboard's bold), then by value; ties keep the report's order."""
    def res(m: str) -> Mapping[str, Any]:
        return results.get(m, {}).get(split) or {}

    valued = [m for m in candidates if isinstance(res(m).get(metric), (int, float)) and not math.isnan(float(res(m)[metric]))]
    return sorted(valued, key=lambda m: (not is_clean(res(m)), -float(res(m)[metric])))


def headline(pairs: Sequence[SplitPairs], results: Mapping[str, Mapping[str, Mapping[str, Any]]], splits: Sequence[str],
             reference: Collection[str], focus: str | None, rounds: int) -> list[dict[str, Any]]:
    """Per split: the best model and its margin over the runner-up per metric (or, with ``focus``, that model
    against each other one), each with its paired 95% interval, p-value and whether it is significant."""
    by_split = {p.split: p for p in pairs}
    out = []
    for split in splits:
        sp = by_split.get(split)
        have = sp.models if sp else [m for m in results if split in results[m]]
        real = [m for m in have if m not in reference]
        refs = [m for m in have if m in reference]
        entry: dict[str, Any] = {"split": split, "rows": [], "message": "", "references": refs, "focus": None,
                                 "partial": {m: t for m in have if (t := partial_text(results.get(m, {}).get(split) or {}))}}
        # One model besides the reference lines: nothing to rank, so it is shown against each reference line.
        alone = real[0] if len(real) == 1 and sp is not None and (focus is None or focus not in have) else None
        if alone is not None:
            entry["message"] = (f"Only one model on this split besides the reference lines ({alone}): no best model to name; "
                                "here it is against each reference line.")
        if (focus is not None and focus in have and sp is not None) or alone is not None:
            focus_here = alone if alone is not None else focus
            assert focus_here is not None and sp is not None
            entry["focus"] = focus_here
            for other in [m for m in have if m != focus_here and not (focus_here in reference and m in reference)]:
                diffs = sp.between(focus_here, other)
                entry["rows"].append({"other": other, "reference": other in reference,
                                      "metrics": [{"metric": LABELS[k], **_claim(diffs[k], rounds)} for k in sp.metrics if k in diffs]})
        elif focus is not None and focus not in have:
            entry["message"] = f"{focus} (the focus) has no scores on this split."
        elif len(real) < 2 or sp is None:
            named = ", ".join(real) or "none"
            entry["message"] = (f"Fewer than two models to rank on this split (models: {named}"
                                + (f"; reference lines, never ranked: {', '.join(refs)}" if refs else "") + "): no best model to name.")
        else:
            for key in sp.metrics:
                order = ranked(results, real, split, key)
                if len(order) < 2:
                    continue
                diffs = sp.between(order[0], order[1])
                if key in diffs:
                    entry["rows"].append({"metric": LABELS[key], **_claim(diffs[key], rounds)})
            if not entry["rows"]:
                entry["message"] = "No metric has a value for two models on this split."
        out.append(entry)
    return out


def _heat_style(delta: float | None, scale: float) -> str:
    """Blue for a positive difference (row better), vermillion for a negative one (Okabe-Ito's pair, readable under
    the common colour-vision deficiencies), paler the smaller; the number stays readable on it."""
    if delta is None or math.isnan(delta) or scale <= 0:
        return ""
    t = min(1.0, abs(delta) / scale)
    r, g, b = (0, 114, 178) if delta > 0 else (213, 94, 0)
    mix = [round(255 + (c - 255) * 0.55 * t) for c in (r, g, b)]
    return f"background: rgb({mix[0]}, {mix[1]}, {mix[2]})"


def heat_maps(pairs: Sequence[SplitPairs], reference: Collection[str], rounds: int) -> list[dict[str, Any]]:
    """Per split and metric, models x models: the cell of row R and column C is R − C on the whole split,
    marked where its interval excludes 0; a pair of two reference lines (never computed) is left blank."""
    out = []
    for sp in pairs:
        for key in sp.metrics:
            cells: dict[tuple[str, str], Difference] = {}
            for r in sp.models:
                for c in sp.models:
                    if r != c and (d := sp.between(r, c).get(key)) is not None:
                        cells[(r, c)] = d
            if not cells:
                continue
            scale = max((abs(d.delta) for d in cells.values() if not math.isnan(d.delta)), default=0.0)
            rows = []
            for r in sp.models:
                row = []
                for c in sp.models:
                    d = cells.get((r, c))
                    if d is None:
                        row.append({"text": "", "style": "", "title": "", "significant": False, "blank": True})
                        continue
                    claim = _claim(d, rounds)
                    row.append({"text": claim["delta"], "style": _heat_style(d.delta, scale), "significant": claim["significant"],
                                "blank": False,
                                "title": f"{r} − {c} = {claim['delta']} {claim['ci']}, p {claim['p']}, n={d.n}"})
                rows.append({"model": r, "reference": r in reference, "cells": row})
            out.append({"split": sp.split, "metric": LABELS[key], "models": sp.models, "rows": rows,
                        "columns": [{"model": m, "reference": m in reference} for m in sp.models]})
    return out


def plotted_pairs(sp: SplitPairs, results: Mapping[str, Mapping[str, Mapping[str, Any]]], reference: Collection[str],
                  focus: str | None) -> list[tuple[str, str]]:
    """The pairs (first, second) drawn per slice: the focus against each other model, else the best model and its
    runner-up by the first metric (cIoU; cgF1 on SA-Co), or a lone model and the best reference line; never two reference lines."""
    if focus is not None and focus in sp.models:
        return [(focus, m) for m in sp.models if m != focus and not (focus in reference and m in reference)]
    order = ranked(results, [m for m in sp.models if m not in reference], sp.split, sp.metrics[0])
    if len(order) == 1:  # one model: against the strongest reference line (how far from the oracle, say)
        refs = ranked(results, [m for m in sp.models if m in reference], sp.split, sp.metrics[0])
        return [(order[0], refs[0])] if refs else []
    return [(order[0], order[1])] if len(order) >= 2 else []


def slice_table(rows: Sequence[Difference], rounds: int) -> list[dict[str, Any]]:
    """A pair's per-slice rows (first − second) as the collapsed sections print them."""
    return [{"where": "whole split" if d.family == ALL else f"{d.family}: {d.slice}", "metric": LABELS[d.metric], **_claim(d, rounds)}
            for d in rows]
