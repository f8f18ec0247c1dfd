"""The report's analysis sections: slices (a heat map of model x slice) and pairwise differences.

Numbers come from results.json ("slices") and, for the pairwise section, from the same paired
bootstrap as ``harness compare`` (``compare.pair_rows``) over the score index the report has
already read, so the report, the CLI and ``harness.load_run`` print the same differences. (The
Reasoning section is harness/publish/report/reasoning.py.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.publish.compare import ALL, LABELS, METRICS, Comparison, pair_rows
from harness.publish.report import plots
from harness.score.paired import DEFAULT_ROUNDS, PairScores
from harness.score.slices import SliceError, SliceSet, assign
from harness.types import Sample

MAX_PAIR_PLOTS = 6  # per split; every pair is in the table


def _heat(value: float | None) -> str:
    """A background colour from pale red (0) to pale green (100); the value stays readable on it."""
    if value is None:
        return ""
    v = max(0.0, min(100.0, float(value))) / 100.0
    return f"background: hsl({int(120 * v)}, 55%, {88 - 6 * v:.0f}%)"


def slices_section(doc: Mapping[str, Any], models: Sequence[str], splits: Sequence[str]) -> list[dict[str, Any]]:
    """Per split and metric: rows = models, columns = slices grouped by family, cells with n and interval."""
    section = doc.get("slices") or {}
    results = section.get("results") or {}
    min_n = (section.get("definitions") or {}).get("min_n")
    out = []
    for split in splits:
        columns: list[tuple[str, str]] = []
        for m in models:
            for family, by_label in (results.get(m, {}).get(split) or {}).items():
                columns += [(family, label) for label in by_label if (family, label) not in columns]
        if not columns:
            continue
        families = list(dict.fromkeys(f for f, _ in columns))
        groups = [{"family": f, "span": sum(1 for g, _ in columns if g == f)} for f in families]
        columns.sort(key=lambda c: families.index(c[0]))
        for metric, label in LABELS.items():
            rows = []
            for m in models:
                cells = []
                for family, lab in columns:
                    res = (results.get(m, {}).get(split) or {}).get(family, {}).get(lab)
                    value = None if res is None else res.get(metric)
                    ci = None if res is None else res.get(f"{metric}_ci95")
                    cells.append({"value": "–" if value is None else f"{value:.1f}", "style": _heat(value),
                                  "ci": f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "", "n": "" if res is None else f"n={res.get('n')}"})
                rows.append({"model": m, "cells": cells})
            out.append({"split": split, "metric": label, "groups": groups, "labels": [lab for _, lab in columns], "rows": rows,
                        "min_n": min_n})
    return out


def pairwise_section(doc: Mapping[str, Any], pair_scores: Mapping[str, Mapping[str, PairScores]], models: Sequence[str],
                     splits: Sequence[str], samples: Mapping[str, Mapping[str, Sample]] | None,
                     rounds: int = DEFAULT_ROUNDS) -> tuple[list[dict[str, Any]], list[str]]:
    """Per split: the whole-split paired differences of every pair, and a per-slice plot of each pair."""
    eps = float((doc.get("conventions") or {}).get("ciou_eps", 1e-10))
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
                pair_rows(a, scores[a], b, scores[b], split, membership, eps, defs.min_n if defs else 2, rounds, METRICS, comparison)
        whole = [d for d in comparison.rows if d.family == ALL]
        table = [{"a": d.a, "b": d.b, "metric": LABELS[d.metric], "a_value": f"{d.a_value:.2f}", "b_value": f"{d.b_value:.2f}",
                  "delta": f"{d.delta:+.2f}", "ci": f"[{d.ci_lo:+.2f}, {d.ci_hi:+.2f}]" if d.ci_lo is not None else "–",
                  "p": "–" if d.p is None else f"{d.p:.3f}", "n": d.n,
                  "significant": d.ci_lo is not None and d.ci_hi is not None and (d.ci_lo > 0 or d.ci_hi < 0)}
                 for d in whole]
        figures = []
        pairs = list(dict.fromkeys((d.a, d.b) for d in comparison.rows))
        for a, b in pairs[:MAX_PAIR_PLOTS]:
            rows = [d for d in comparison.rows if (d.a, d.b) == (a, b)]
            uri = plots.slice_differences(split, a, b, rows)
            if uri:
                figures.append(uri)
        if len(pairs) > MAX_PAIR_PLOTS:
            notes.append(f"{split}: per-slice plots of the first {MAX_PAIR_PLOTS} of {len(pairs)} pairs (every pair is in the table)")
        out.append({"split": split, "rows": table, "figures": figures, "notes": comparison.notes})
    return out, notes
