"""SA-Co's concept-segmentation metrics, reduced from each sample's ``InstanceMatch``, with bootstrap intervals.

Written from the behaviour of facebookresearch/sam3 ``sam3/eval/cgf1_eval.py`` (``CGF1Eval.accumulate``
and ``summarize``, revision 99d02f2) and tested against its ``CGF1Evaluator`` (tests/test_cgf1.py). Per
image–phrase pair the matching (harness/score/instances.py) gives the detections ``n_dt``, the chosen
annotator's instances ``n_gt`` and the true positives at each IoU threshold; then, summed over pairs:

- image level: a pair is a true positive when both ``n_gt`` and ``n_dt`` are non-zero, a true negative
  when both are zero, a false positive or negative otherwise; IL_precision, IL_recall, IL_F1, IL_FPR and
  IL_MCC (Matthews' correlation) from those four counts, each denominator plus 1e-6;
- instance level, per threshold: TP, FP = n_dt - TP and FN = n_gt - TP summed over every pair that is
  not an image-level true negative; precision, recall and F1 from them, each denominator plus 1e-4;
  **pmF1** (``positive_micro_F1``) the same F1 with the false positives of image-level true positives
  only; ``positive_macro_F1`` the mean of those pairs' own F1;
- **cgF1** = pmF1 x IL_MCC at each threshold; every instance-level number is the mean over the ten
  thresholds 0.50:0.05:0.95, and also given at 0.5 and 0.75 (``cgf1@0.5``, ...).

Names are upstream's, lower-cased, and pmF1 is ``pmf1``. Every number is in percent (x 100, as the SAM 3
README prints cgF1 and pmF1) except ``il_mcc``, a correlation in [-1, 1] as SA-Co publishes it.
``positive_macro_f1`` is absent where no pair is an image-level true positive (upstream prints -1).
Pairs enter only when they are scored on instances (``InstanceMatch`` present): the pairs every
annotator marked instance-exhaustive, as upstream evaluates only those.

The intervals (``cgf1_ci95``, ``pmf1_ci95``, ``il_mcc_ci95``) are percentile 95% intervals over
resamples of the pairs with replacement (``BOOTSTRAP_ROUNDS``, seed 0, as the mask metrics'). A suite's
average over several splits (SA-Co/Gold's seven subsets: the README's "Average" column is the plain mean
of the subsets' numbers) averages each metric, and its interval averages the splits' resampled values
round by round (each split resampled on its own, as the mean of independent subsets is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.score.instances import LOCAL_EPS, local_f1
from harness.types import IOU_THRESHOLDS

_K = len(IOU_THRESHOLDS)
_AT = {"0.5": 0, "0.75": 5}  # the thresholds upstream reports on their own (IOU_THRESHOLDS[0] and [5])
IL_EPS = 1e-6
# Instance-level metrics (ours <- upstream's name), each a mean over thresholds and at 0.5 and 0.75.
INSTANCE_LEVEL = (("cgf1", "cgF1"), ("precision", "precision"), ("recall", "recall"), ("f1", "F1"),
                  ("positive_macro_f1", "positive_macro_F1"), ("pmf1", "positive_micro_F1"),
                  ("positive_micro_precision", "positive_micro_precision"))
IMAGE_LEVEL = (("il_precision", "IL_precision"), ("il_recall", "IL_recall"), ("il_f1", "IL_F1"), ("il_fpr", "IL_FPR"),
               ("il_mcc", "IL_MCC"))
COEFFICIENTS = frozenset({"il_mcc"})  # not percentages
WITH_INTERVALS = ("cgf1", "pmf1", "il_mcc")
# The columns whose sums every metric is a function of (one row per pair).
_IL = slice(0, 4)  # image-level TP, TN, FP, FN
_TP, _FP, _FN, _PM_FP, _POS_F1 = (slice(4 + k * _K, 4 + (k + 1) * _K) for k in range(5))
_WIDTH = 4 + 5 * _K


def metric_names() -> list[str]:
    """Every key the instance metrics may write into a split's results (intervals aside)."""
    names = [name for name, _ in INSTANCE_LEVEL]
    names += [f"{name}@{at}" for name, _ in INSTANCE_LEVEL for at in _AT]
    return names + [name for name, _ in IMAGE_LEVEL]


def table(matches: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """One row per pair (an ``InstanceMatch.to_json()``, as stored) of the counts the metrics sum."""
    return table_of(counts(matches))


def counts(matches: Sequence[Mapping[str, Any] | None]) -> np.ndarray:
    """``[n_dt, n_gt, tp at each threshold]`` per pair (an ``InstanceMatch.to_json()`` or None), as int64;
    a row of -1 where a sample has no match (it is not scored on instances)."""
    out = np.full((len(matches), 2 + _K), -1, dtype=np.int64)
    for k, m in enumerate(matches):
        if m is not None:
            out[k, 0], out[k, 1], out[k, 2:] = m["n_dt"], m["n_gt"], m["tp"]
    return out


def table_of(raw: np.ndarray) -> np.ndarray:
    """``table`` from ``counts``' rows; a row without a match (-1) is a row of zeros: it adds to no sum."""
    out = np.zeros((raw.shape[0], _WIDTH), dtype=np.float64)
    scored = raw[:, 0] >= 0
    if not scored.any():
        return out
    n_dt, n_gt, tp = raw[scored, 0], raw[scored, 1], raw[scored, 2:]
    out[scored] = _rows(n_dt, n_gt, tp)
    return out


def value(sums: np.ndarray, name: str) -> np.ndarray:
    """Metric ``name`` (in its published units) from ``table`` columns summed (..., width)."""
    return _scaled(name, 1.0) * _from_sums(sums)[name]


def _rows(n_dt: np.ndarray, n_gt: np.ndarray, tp: np.ndarray) -> np.ndarray:
    out = np.zeros((len(n_dt), _WIDTH), dtype=np.float64)
    positive = (n_gt > 0) & (n_dt > 0)
    out[:, _IL] = np.stack([positive, (n_gt == 0) & (n_dt == 0), (n_gt == 0) & (n_dt > 0), (n_gt > 0) & (n_dt == 0)], axis=1)
    fp, fn = n_dt[:, None] - tp, n_gt[:, None] - tp
    out[:, _TP], out[:, _FP], out[:, _FN] = tp, fp, fn
    out[:, _PM_FP] = np.where(positive[:, None], fp, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, _POS_F1] = np.where(positive[:, None], local_f1(tp, n_dt[:, None], n_gt[:, None]), 0.0)
    return out


def _from_sums(s: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric (raw units) from summed columns; ``s`` is (..., width), each result (...)."""
    il_tp, il_tn, il_fp, il_fn = (s[..., k] for k in range(4))
    tp, fp, fn, pm_fp, pos_f1 = s[..., _TP], s[..., _FP], s[..., _FN], s[..., _PM_FP], s[..., _POS_F1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp + LOCAL_EPS)
        pm_precision = tp / (tp + pm_fp + LOCAL_EPS)
        recall = tp / (tp + fn + LOCAL_EPS)
        f1 = 2 * precision * recall / (precision + recall + LOCAL_EPS)
        pm_f1 = 2 * pm_precision * recall / (pm_precision + recall + LOCAL_EPS)
        macro = pos_f1 / il_tp[..., None]  # NaN where no pair is an image-level true positive
        il_recall = il_tp / (il_tp + il_fn + IL_EPS)
        il_precision = il_tp / (il_tp + il_fp + IL_EPS)
        il_f1 = 2 * il_precision * il_recall / (il_precision + il_recall + IL_EPS)
        il_fpr = il_fp / (il_fp + il_tn + IL_EPS)
        mcc = (il_tp * il_tn - il_fp * il_fn) / (((il_tp + il_fp) * (il_tp + il_fn) * (il_tn + il_fp) * (il_tn + il_fn)) ** 0.5 + IL_EPS)
    per_threshold = {"cgF1": pm_f1 * mcc[..., None], "precision": precision, "recall": recall, "F1": f1,
                     "positive_macro_F1": macro, "positive_micro_F1": pm_f1, "positive_micro_precision": pm_precision}
    out: dict[str, np.ndarray] = {}
    for name, upstream in INSTANCE_LEVEL:
        values = per_threshold[upstream]
        # upstream's summarize: the mean of the thresholds' values that are > -1 (NaN never is)
        with np.errstate(invalid="ignore"):
            kept = values > -1
            out[name] = np.where(kept.any(-1), np.where(kept, values, 0).sum(-1) / np.maximum(kept.sum(-1), 1), np.nan)
        for at, k in _AT.items():
            out[f"{name}@{at}"] = np.where(values[..., k] > -1, values[..., k], np.nan)
    out.update({"il_precision": il_precision, "il_recall": il_recall, "il_f1": il_f1, "il_fpr": il_fpr, "il_mcc": mcc})
    return out


def _scaled(name: str, value: float) -> float:
    return value if name.split("@")[0] in COEFFICIENTS else 100.0 * value


def resampled(rows: np.ndarray, rounds: int, seed: int) -> dict[str, np.ndarray]:
    """Each of ``WITH_INTERVALS`` on ``rounds`` resamples of the pairs (with replacement), in its units;
    empty arrays when there are fewer than two pairs or no rounds."""
    n = rows.shape[0]
    if n < 2 or rounds <= 0:
        return {name: np.zeros(0) for name in WITH_INTERVALS}
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)  # a resample is a vector of draw counts: a few MB of them at a time
    sums = []
    for start in range(0, rounds, chunk):
        k = min(chunk, rounds - start)
        idx = rng.integers(0, n, size=(k, n)) + (np.arange(k) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=k * n).reshape(k, n).astype(np.float64)
        sums.append(counts @ rows)
    values = _from_sums(np.concatenate(sums))
    return {name: _scaled(name, 1.0) * values[name] for name in WITH_INTERVALS}


def interval(draws: np.ndarray) -> list[float] | None:
    kept = draws[~np.isnan(draws)]
    return [float(np.percentile(kept, 2.5)), float(np.percentile(kept, 97.5))] if kept.size else None


def summarize(matches: Sequence[Mapping[str, Any]], rounds: int, seed: int = 0,
              draws: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The instance metrics of one split from its pairs' matches (``n_cgf1`` pairs), with intervals when
    ``rounds`` > 0; ``draws``, when given, receives the resampled values the intervals came from."""
    rows = table(matches)
    out: dict[str, Any] = {"n_cgf1": len(matches)}
    if not matches:
        return out
    values = _from_sums(rows.sum(axis=0))
    for name in metric_names():
        value = float(values[name])
        if not np.isnan(value):
            out[name] = _scaled(name, value)
    resamples = resampled(rows, rounds, seed)
    for name, vals in resamples.items():
        bounds = interval(vals)
        if bounds is not None:
            out[f"{name}_ci95"] = bounds
    if draws is not None:
        draws.update(resamples)
    return out


def average(per_split: Sequence[Mapping[str, Any]], draws: Sequence[Mapping[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """The mean of each instance metric over splits (every split must have it), ``n_cgf1`` summed; with the
    splits' resampled values (same rounds each), the intervals of the mean."""
    out: dict[str, Any] = {"n_cgf1": int(sum(int(r.get("n_cgf1", 0)) for r in per_split)), "n_splits": len(per_split)}
    for name in metric_names():
        values = [r.get(name) for r in per_split]
        if per_split and all(isinstance(v, (int, float)) for v in values):
            out[name] = float(np.mean(np.asarray(values, dtype=np.float64)))
    if draws and len(draws) == len(per_split):
        for name in WITH_INTERVALS:
            stacked = [d.get(name) for d in draws]
            if all(v is not None and v.size for v in stacked) and len({v.size for v in stacked}) == 1:  # type: ignore[union-attr]
                bounds = interval(np.mean(np.stack(stacked), axis=0))  # type: ignore[arg-type]
                if bounds is not None:
                    out[f"{name}_ci95"] = bounds
    return out
