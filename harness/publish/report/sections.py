"""The report's slice section: a heat map of model x slice, from results.json ("slices").

(The headline and the pairwise differences are harness/publish/report/pairwise.py, the Reasoning
section harness/publish/report/reasoning.py.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.publish.compare import LABELS, METRICS


def _heat(value: float | None) -> str:
    """A background from near-white (0) to mid blue (100): one hue, so it reads the same under the common
    colour-vision deficiencies (a red-to-green scale does not); the value stays readable on it."""
    if value is None:
        return ""
    v = max(0.0, min(100.0, float(value))) / 100.0
    return f"background: hsl(205, 70%, {96 - 30 * v:.0f}%)"


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
        for metric in METRICS:  # slices hold the mask metrics
            label = LABELS[metric]
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
