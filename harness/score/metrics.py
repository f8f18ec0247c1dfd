"""Metrics: reductions over SampleScore records (UPSTREAM 1.1), with bootstrap intervals.

Values are returned in percent (0-100), like the papers. cIoU = 100·ΣI/(ΣU+ε) over the
samples counted in cIoU; gIoU = 100·mean per-sample IoU (LISA's I/(U+1e-5), 1 for an
empty union) over the samples kept in gIoU; Prec@X = share of samples with I/U >= X.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from harness.data.conventions import Conventions
from harness.types import SCORE_ROW_FIELDS, SampleScore

PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class ScoreArrays:
    """Column view of a list of SampleScore, for vectorised reductions and resampling."""

    inter: np.ndarray
    union: np.ndarray
    in_ciou: np.ndarray
    iou: np.ndarray  # NaN where the sample is left out of gIoU
    gt_empty: np.ndarray
    no_target: np.ndarray  # the dataset's flag; gt_empty for logs scored before it was recorded
    pred_empty: np.ndarray
    failed: np.ndarray
    parse_failed: np.ndarray
    box_iou: np.ndarray  # NaN where the ground truth has no box
    not_drawn: np.ndarray  # the protocol left the sample out (GLaMM's seeded draw): in no metric
    bad_box: np.ndarray  # the stated box broke the box rule (harness.score.scoring.bad_box)

    @classmethod
    def of(cls, scores: Sequence[SampleScore]) -> ScoreArrays:
        return cls(
            inter=np.array([s.intersection for s in scores], dtype=np.float64),
            union=np.array([s.union for s in scores], dtype=np.float64),
            in_ciou=np.array([s.counted_in_ciou for s in scores], dtype=bool),
            iou=np.array([np.nan if s.iou is None else s.iou for s in scores], dtype=np.float64),
            gt_empty=np.array([s.gt_empty for s in scores], dtype=bool),
            no_target=np.array([s.gt_empty if s.no_target is None else s.no_target for s in scores], dtype=bool),
            pred_empty=np.array([s.pred_empty for s in scores], dtype=bool),
            failed=np.array([s.failed for s in scores], dtype=bool),
            parse_failed=np.array([s.parse_failed for s in scores], dtype=bool),
            box_iou=np.array([np.nan if s.box_iou is None else s.box_iou for s in scores], dtype=np.float64),
            not_drawn=np.array([s.not_drawn for s in scores], dtype=bool),
            bad_box=np.array([s.bad_box for s in scores], dtype=bool),
        )


    @classmethod
    def of_rows(cls, rows: Sequence[Sequence[Any]]) -> ScoreArrays:
        """The same columns from rows of a SampleScore's fields in declaration order (a log's score
        index), without building SampleScore objects; None becomes NaN, booleans 0/1, as above."""
        names = SCORE_ROW_FIELDS
        m = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
        col = {name: m[:, k] for k, name in enumerate(names)}
        return cls(
            inter=col["intersection"].copy(),
            union=col["union"].copy(),
            in_ciou=col["counted_in_ciou"] != 0,
            iou=col["iou"].copy(),
            gt_empty=col["gt_empty"] != 0,
            # None (NaN here): scored before the flag was recorded, when the ground-truth area decided.
            no_target=np.where(np.isnan(col["no_target"]), col["gt_empty"] != 0, col["no_target"] == 1),
            pred_empty=col["pred_empty"] != 0,
            failed=col["failed"] != 0,
            parse_failed=col["parse_failed"] != 0,
            box_iou=col["box_iou"].copy(),
            not_drawn=col["not_drawn"] == 1,
            bad_box=col["bad_box"] == 1,
        )

    def subset(self, keep: np.ndarray) -> ScoreArrays:
        """The rows where ``keep`` is true."""
        return ScoreArrays(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})


def ciou(arr: ScoreArrays, conv: Conventions) -> float:
    denominator = arr.union[arr.in_ciou].sum() + conv.ciou_eps
    return float(100.0 * arr.inter[arr.in_ciou].sum() / denominator) if denominator > 0 else 0.0


def giou(arr: ScoreArrays) -> float:
    kept = arr.iou[~np.isnan(arr.iou)]
    return float(100.0 * kept.mean()) if kept.size else float("nan")


def _bootstrap(arr: ScoreArrays, conv: Conventions, rounds: int, seed: int) -> dict[str, list[float]]:
    """Percentile 95% intervals for cIoU and gIoU, resampling samples with replacement."""
    n = arr.inter.size
    if n < 2 or rounds <= 0:
        return {}
    rng = np.random.default_rng(seed)
    inter = np.where(arr.in_ciou, arr.inter, 0.0)
    union = np.where(arr.in_ciou, arr.union, 0.0)
    kept = ~np.isnan(arr.iou)
    iou = np.where(kept, arr.iou, 0.0)
    c_vals, g_vals = [], []
    chunk = max(1, 200_000 // n)  # a few MB of indices and gathered values per chunk, whatever n
    for start in range(0, rounds, chunk):
        idx = rng.integers(0, n, size=(min(chunk, rounds - start), n))
        with np.errstate(invalid="ignore", divide="ignore"):
            c_vals.append(np.nan_to_num(100.0 * inter[idx].sum(1) / (union[idx].sum(1) + conv.ciou_eps)))
        with np.errstate(invalid="ignore"):
            g_vals.append(100.0 * iou[idx].sum(1) / kept[idx].sum(1))
    out = {}
    for name, vals in (("ciou", np.concatenate(c_vals)), ("giou", np.concatenate(g_vals))):
        vals = vals[~np.isnan(vals)]
        if vals.size:
            out[name] = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]
    return out


def summarize(
    scores: Sequence[SampleScore] | ScoreArrays,
    conv: Conventions,
    bootstrap_rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """All metrics of one model on one split. Keys absent where a metric does not apply.

    Samples the protocol did not draw (``not_drawn``) are stored records (``n_records``) but
    enter nothing else: not ``n``, not ``n_failed``, no metric; ``n_not_drawn`` counts them.
    """
    everything = scores if isinstance(scores, ScoreArrays) else ScoreArrays.of(scores)
    n_records = int(everything.inter.size)
    arr = everything.subset(~everything.not_drawn) if everything.not_drawn.any() else everything
    n_drawn = int(arr.inter.size)
    kept_giou = ~np.isnan(arr.iou)
    scored = kept_giou | arr.in_ciou
    out: dict[str, Any] = {
        "n": int(scored.sum()),
        "n_records": n_records,
        "n_failed": int(arr.failed.sum()),
        "n_ciou": int(arr.in_ciou.sum()),
        "n_giou": int(kept_giou.sum()),
    }
    if n_drawn < n_records:
        out["n_not_drawn"] = n_records - n_drawn
    if not n_drawn:
        return out
    out["ciou"] = ciou(arr, conv)
    if out["n_giou"]:
        out["giou"] = giou(arr)

    # Prec@X on the plain I/U; an empty union takes the per-sample empty-union rule already in
    # ``iou`` (1 under "one" for LISA; 0 for a targeted sample under ReLA's rule).
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = np.where(arr.union > 0, arr.inter / arr.union, np.nan_to_num(arr.iou, nan=0.0))
    raw = np.where(arr.failed & (conv.failure != "as_empty"), 0.0, raw)
    prec_set = kept_giou & (~arr.no_target if conv.precision_over == "targeted" else True)
    if prec_set.any():
        for t in PRECISION_THRESHOLDS:
            out[f"prec@{t:.1f}"] = float(100.0 * (raw[prec_set] >= t).mean())

    has_box = ~np.isnan(arr.box_iou) & ~arr.gt_empty
    if arr.bad_box.any():  # the box rule: each counts as a box miss above; the mask is scored as usual
        out["n_bad_box"] = int(arr.bad_box.sum())
    if has_box.any():
        out["n_box"] = int(has_box.sum())
        out["box_acc@0.5"] = float(100.0 * (arr.box_iou[has_box] >= conv.box_threshold).mean())
        out["box_miou"] = float(100.0 * arr.box_iou[has_box].mean())

    # No-target accuracy (ReLA): over the samples the dataset flags no-target, predicted "no
    # target" = an empty predicted mask. A failed prediction is never a correct answer for either kind.
    if arr.no_target.any():
        nt = arr.no_target
        out["n_no_target"] = int(nt.sum())
        out["n_acc"] = float(100.0 * (arr.pred_empty[nt] & ~arr.failed[nt]).mean())
        # A mask on an absent target: the false positives a false-premise benchmark counts (failures are neither).
        out["fp_rate"] = float(100.0 * (~arr.pred_empty[nt] & ~arr.failed[nt]).mean())
        if (~nt).any():
            out["t_acc"] = float(100.0 * (~arr.pred_empty[~nt] & ~arr.failed[~nt]).mean())
        # SESAME's "See" accuracy (eval_sesame.py run_eval): over every sample, whether the model's answer
        # (a mask, or none) agrees with the dataset's target / no-target flag.
        said_present = ~arr.pred_empty & ~arr.failed
        said_absent = arr.pred_empty & ~arr.failed
        out["exist_acc"] = float(100.0 * np.where(nt, said_absent, said_present).mean())
    # Targeted samples whose ground truth is empty (a polygon that rasterises to no pixel):
    # scored by the targeted rules, counted so that the report can say so.
    empty_targeted = int((arr.gt_empty & ~arr.no_target).sum())
    if empty_targeted:
        out["n_targeted_empty_gt"] = empty_targeted

    out["parse_failure_rate"] = float(100.0 * arr.parse_failed.mean())
    ci = _bootstrap(arr, conv, bootstrap_rounds, seed)
    for name, bounds in ci.items():
        out[f"{name}_ci95"] = bounds
    return out
