"""Crafted run directories that a verifying reader accepts: manifest, logs whose lines obey the score
invariants and carry a mask of the stated area, and a results.json derived from them by the library.

Tests that need a run of given numbers (a gate that must see a drop, a leaderboard that must bold a
value) build one here instead of writing a results.json by hand: the reader derives every number
from the stored scores and refuses a results.json that says anything else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness import masks
from harness.data.conventions import Conventions
from harness.records.reader import StoredRun
from harness.records.results import expected_counts, ids_digest, source_digest, split_result
from harness.score.schema import SCHEMA_NAME, SCHEMA_VERSION
from harness.score.version import scoring_version
from harness.types import SampleScore


def consistent(inter: int, union: int, conv: Conventions | None = None, failed: bool = False, box_iou: float | None = None,
               no_target: bool | None = None) -> SampleScore:
    """A score with this intersection and union that obeys every invariant: the areas split the
    difference (I <= P, G and U = P + G - I); a failed one has no predicted pixel (failure policy zero)."""
    conv = conv or Conventions()
    if failed:
        return SampleScore(0, union, union, 0, 0.0, union == 0, True, True, False, True, box_iou, no_target)
    gt = inter + (union - inter) // 2
    pred = union - gt + inter
    iou = inter / (union + conv.giou_eps) if union else 1.0
    return SampleScore(inter, union, gt, pred, iou, gt == 0, pred == 0, False, False, True, box_iou, no_target)


def _mask_of(area: int, pixels: int) -> dict[str, Any]:
    side = max(1, math.isqrt(max(pixels, 1)) + 1)
    flat = np.zeros(side * side, dtype=np.uint8)
    flat[:area] = 1
    return dict(masks.encode(flat.reshape(side, side)))


def log_line(sid: str, score: SampleScore) -> str:
    pred: dict[str, Any] = {"mask": None if score.failed else _mask_of(score.pred_area, max(score.pred_area, score.gt_area)),
                            "parse_status": "none"}
    if score.failed:
        pred["error"] = "crafted failure"
    return json.dumps({"id": sid, "expression": "x", "prediction": pred, "score": score.to_json()}) + "\n"


def write_crafted_run(root: Path, logs: Mapping[str, Mapping[str, Sequence[tuple[str, SampleScore]]]],
                      suite: Mapping[str, Any] | None = None, conventions: Mapping[str, Any] | None = None,
                      models: Mapping[str, Mapping[str, Any]] | None = None, limit: int | None = None,
                      split_sizes: Mapping[str, int] | None = None, bootstrap_rounds: int = 50,
                      published: Sequence[Mapping[str, Any]] = (), extra_manifest: Mapping[str, Any] | None = None) -> Path:
    """A run directory of ``logs`` (model -> split -> [(id, score)]), its results.json derived as the reader derives it."""
    conv = Conventions.from_dict(dict(conventions) if conventions else None)
    version = scoring_version(conv)
    splits = list(dict.fromkeys(s for by in logs.values() for s in by))
    sizes = dict(split_sizes or {})
    for by in logs.values():
        for split, lines in by.items():
            sizes.setdefault(split, len(lines))
    manifest = {
        "run_id": root.name, "git_commit": "abc", "created": "now", "suite": dict(suite or {"name": "crafted", "version": "1",
                                                                                        "fingerprint": "suitefp"}),
        "conventions": conv.to_dict(), "config": {"limit": limit, "bootstrap_rounds": bootstrap_rounds},
        "splits": splits, "split_sizes": sizes,
        "models": {m: dict((models or {}).get(m) or {"adapter": m, "fingerprint": "modelfp"}) for m in logs},
        "status": {m: {s: "done" for s in by} for m, by in logs.items()},
        "asked": {m: list(by) for m, by in logs.items()},
        "scoring_versions": {f"{m}/{s}.jsonl": version for m, by in logs.items() for s in by},
        **dict(extra_manifest or {}),
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest))
    for model, by in logs.items():
        for split, lines in by.items():
            path = root / model / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(log_line(sid, score) for sid, score in lines))
    run = StoredRun(root)
    results: dict[str, dict[str, Any]] = {}
    counted: dict[tuple[str, str], list[str]] = {}
    for model, by in logs.items():
        for split in by:
            entries = run.entries(model, split)
            ids = sorted(entries)
            n_expected, n_split, lim, data = expected_counts(manifest, split)
            assert n_expected is not None
            results.setdefault(model, {})[split] = split_result(entries, ids, conv, bootstrap_rounds, n_expected, n_split,
                                                                bool(lim and len(ids) >= lim), data)
            counted[(model, split)] = ids
    doc = {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "unit": "percent", "run_id": root.name,
           "suite": manifest["suite"], "conventions": conv.to_dict(), "scoring_version": version,
           "models": manifest["models"], "results": results, "published": list(published),
           "source": source_digest(run, counted)}
    assert all(doc["source"]["ids"][f"{m}/{s}"] == ids_digest(ids) for (m, s), ids in counted.items())
    (root / "results.json").write_text(json.dumps(doc))
    return root


def scores_for(ciou: float, giou: float, n: int = 100, conv: Conventions | None = None) -> list[SampleScore]:
    """``n`` (even) consistent scores whose cIoU and gIoU are ``ciou`` and ``giou`` percent to 1e-4 points:
    pairs of samples with IoUs g + d and g - d, the first weighted by its union so that cIoU moves to c."""
    g, c = giou / 100, ciou / 100
    d = 0.9 * min(g, 1 - g)
    if abs(c - g) > 1e-12 and d <= abs(c - g):
        raise ValueError(f"no two-IoU mixture gives cIoU {ciou} with gIoU {giou}")
    q = 0.0 if d == 0 else (c - g) / d
    w = (1 + q) / (1 - q)  # union of the first sample over the second's
    u2 = 10**7
    u1 = round(w * u2)
    pair = [consistent(round((g + d) * u1), u1, conv), consistent(round((g - d) * u2), u2, conv)]
    return [pair[k % 2] for k in range(n)]


def index_records(records: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]) -> dict[tuple[str, str], dict[str, Mapping[str, Any]]]:
    """model -> split -> records  becomes  (split, id) -> model -> record (last write wins), the gallery's input."""
    index: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for model, by_split in records.items():
        for split, recs in by_split.items():
            for rec in recs:
                index.setdefault((split, str(rec.get("id"))), {})[model] = rec
    return index
