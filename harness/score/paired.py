"""Paired bootstrap of a difference between two sets of per-sample scores: cIoU, gIoU, and where the
samples are scored on instances (SA-Co/Gold) cgF1, pmF1 and IL_MCC.

Every metric here is a function of per-sample columns summed over the drawn samples: cIoU of
(intersection, union), gIoU of (IoU, 1), the instance metrics of ``harness.score.cgf1.table``'s
columns (SA-Co's counts per image–phrase pair). IL_MCC, a coefficient in [-1, 1], is given x100 here,
so a difference of it is in points like every other (``scale``).

One implementation shared by ``harness gate`` (and, later, ``harness compare``). Samples are
paired by id: both sides hold the same ids in the same (sorted) order, and every resample
draws the same ids for both. ``idx`` may be given explicitly (rounds x n indices), so a test
can enumerate every resample of a small case and check the result against a hand computation.

The p-value is the two-sided test of "no difference" that inverts the percentile interval, from
the same resampled deltas: p = twice the smaller share of resampled deltas on either side of 0
(at most 1). So p < 0.05 exactly when the 95% percentile interval lies on one side of 0 (up to the
interpolation at the interval's ends), and p is never at odds with the interval printed beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any, Protocol, TypeVar

import numpy as np

from harness.score import cgf1
from harness.score.metrics import ScoreArrays
from harness.types import SampleScore

DEFAULT_ROUNDS = 1000
INSTANCE_METRICS = ("cgf1", "pmf1", "il_mcc")  # need the samples' instance matches (Columns.instances)


class Scores(Protocol):
    """Per-sample columns sorted by id (PairScores below has this shape)."""

    # Read-only members, so a frozen dataclass satisfies the protocol.
    @property
    def ids(self) -> tuple[str, ...]: ...
    @property
    def inter(self) -> np.ndarray: ...
    @property
    def union(self) -> np.ndarray: ...
    @property
    def iou(self) -> np.ndarray: ...  # NaN where the sample is left out of gIoU
    @property
    def in_ciou(self) -> np.ndarray: ...
    @property
    def instances(self) -> np.ndarray | None: ...  # cgf1.counts rows; None where no sample is scored on instances


def scale(metric: str) -> float:
    """What a metric's published value is multiplied by here: 100 for a coefficient (IL_MCC), else 1."""
    return 100.0 if metric in cgf1.COEFFICIENTS else 1.0


def point(p: Scores, metric: str, eps: float) -> float:
    if metric in INSTANCE_METRICS:
        return float(_value(cgf1.table_of(_matches(p, metric)).sum(axis=0)[None, :], metric, eps)[0])
    if metric == "ciou":
        return float(100.0 * p.inter[p.in_ciou].sum() / (p.union[p.in_ciou].sum() + eps))
    kept = p.iou[~np.isnan(p.iou)]
    return float(100.0 * kept.mean()) if kept.size else math.nan


def _matches(p: Scores, metric: str) -> np.ndarray:
    if p.instances is None:
        raise ValueError(f"{metric} needs the samples' instance matches, and these scores have none (a suite scored on masks)")
    return p.instances


def _columns(p: Scores, metric: str) -> list[np.ndarray]:
    """The per-sample columns whose resampled sums give the metric (``_value``): cIoU's (intersection, union),
    gIoU's (IoU, 1), an instance metric's ``cgf1.table`` columns."""
    if metric in INSTANCE_METRICS:
        return list(cgf1.table_of(_matches(p, metric)).T)
    if metric == "ciou":
        return [np.where(p.in_ciou, p.inter, 0.0), np.where(p.in_ciou, p.union, 0.0)]
    kept = ~np.isnan(p.iou)
    return [np.where(kept, p.iou, 0.0), kept.astype(np.float64)]


def _value(sums: np.ndarray, metric: str, eps: float) -> np.ndarray:
    """The metric (percent; IL_MCC x100) from its columns' sums, (rounds, width) -> (rounds,)."""
    if metric in INSTANCE_METRICS:
        return np.asarray(scale(metric) * cgf1.value(sums, metric))
    num, den = sums[:, 0], sums[:, 1]
    if metric == "ciou":
        return np.asarray(100.0 * num / (den + eps))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(100.0 * num / den)


def _layout(run: Scores, base: Scores, metrics: Sequence[str]) -> tuple[list[np.ndarray], list[tuple[slice, slice]]]:
    """The columns of every metric, run's then base's, side by side, and where each metric's two sides lie."""
    columns: list[np.ndarray] = []
    where = []
    for m in metrics:
        r, b = _columns(run, m), _columns(base, m)
        start = len(columns)
        columns += r + b
        where.append((slice(start, start + len(r)), slice(start + len(r), start + len(r) + len(b))))
    return columns, where


def deviations_by_metric(run: Scores, base: Scores, metrics: Sequence[str], eps: float = 1e-10, rounds: int = DEFAULT_ROUNDS,
                         seed: int = 0, idx: np.ndarray | None = None) -> dict[str, tuple[float, np.ndarray]]:
    """``deviations`` of several metrics from the same resamples (one draw, one gather per round)."""
    if run.ids != base.ids:
        raise ValueError("paired bootstrap needs the same sample ids on both sides")
    n = len(run.ids)
    centers = {m: point(run, m, eps) - point(base, m, eps) for m in metrics}
    if idx is None and (n < 2 or rounds <= 0):
        return {m: (centers[m], np.zeros(0)) for m in metrics}
    columns, where = _layout(run, base, metrics)
    table = np.stack(columns, axis=1)  # (n, the metrics' columns)

    def deltas(draw: np.ndarray) -> np.ndarray:
        # A resample's sums are (how often each sample was drawn) @ table: one bincount and one matrix product
        # give every column of every metric, several times faster than a gather per column.
        rows = draw.shape[0]
        counts = np.bincount((draw + (np.arange(rows) * n)[:, None]).ravel(), minlength=rows * n).reshape(rows, n)
        sums = counts.astype(np.float64) @ table
        return np.stack([_value(sums[:, r], m, eps) - _value(sums[:, b], m, eps) for m, (r, b) in zip(metrics, where)], axis=1)

    if idx is not None:
        got = deltas(np.asarray(idx))
    else:
        rng = np.random.default_rng(seed)
        chunk = max(1, 2_000_000 // n)  # the draws' block size is part of the random stream: keep it
        got = np.concatenate([deltas(rng.integers(0, n, size=(min(chunk, rounds - start), n))) for start in range(0, rounds, chunk)])
    out = {}
    for j, m in enumerate(metrics):
        dev = got[:, j] - centers[m]
        out[m] = (centers[m], dev[~np.isnan(dev)])
    return out


_C = TypeVar("_C", bound="Columns")


@dataclass(frozen=True)
class Columns:
    """The per-sample columns the bootstrap reads (a concrete ``Scores``): the one holder of them,
    for a baseline's scores (PairScores below), a slice, or a subset."""

    ids: tuple[str, ...]
    inter: np.ndarray
    union: np.ndarray
    iou: np.ndarray
    in_ciou: np.ndarray
    instances: np.ndarray | None = None  # cgf1.counts rows (a row of -1: no match); None: no sample has one

    @classmethod
    def subset(cls, p: Scores, mask: np.ndarray) -> Columns:
        return Columns(tuple(compress(p.ids, np.asarray(mask).tolist())), p.inter[mask], p.union[mask], p.iou[mask], p.in_ciou[mask],
                       None if p.instances is None else p.instances[mask])

    def take(self: _C, idx: np.ndarray, ids: Sequence[str]) -> _C:
        """The samples at ``idx`` (positions or a boolean mask), now named ``ids``; the same class."""
        return type(self)(tuple(ids), self.inter[idx], self.union[idx], self.iou[idx], self.in_ciou[idx],
                          None if self.instances is None else self.instances[idx])


def _part(p: Scores, mask: np.ndarray) -> Columns:
    """The columns of the samples in ``mask``, without their ids (for ``point``)."""
    return Columns((), p.inter[mask], p.union[mask], p.iou[mask], p.in_ciou[mask], None if p.instances is None else p.instances[mask])


def deviations_by_group(run: Scores, base: Scores, groups: Sequence[np.ndarray], metrics: Sequence[str], eps: float = 1e-10,
                        rounds: int = DEFAULT_ROUNDS, seed: int = 0) -> list[dict[str, tuple[float, np.ndarray]]]:
    """``deviations_by_metric`` for groups of the samples (boolean masks, e.g. slices) from one set of resamples
    of all of them: each resample draws n ids with replacement, and a group's metric is computed on the drawn
    samples that fall in it (so the slices of one resample are resampled jointly, and a group that is all the
    samples gets exactly ``deviations_by_metric``). A resample that draws none of a group is dropped for it."""
    if run.ids != base.ids:
        raise ValueError("paired bootstrap needs the same sample ids on both sides")
    n = len(run.ids)
    # A group's point values need its columns only, not its ids (a tuple per group and side was most of this function's Python time).
    centers = [{m: point(_part(run, g), m, eps) - point(_part(base, g), m, eps) for m in metrics} for g in groups]
    if n < 2 or rounds <= 0 or not groups:
        return [{m: (c[m], np.zeros(0)) for m in metrics} for c in centers]
    # Per metric its columns (run's, then base's), then a column of ones: how many of the group were drawn.
    columns_, where = _layout(run, base, metrics)
    table = np.stack([*columns_, np.ones(n)], axis=1)
    width = table.shape[1]
    # The groups' tables side by side (n x width per group) would be 100 MB for 14 slices of 100k
    # samples: they are multiplied in blocks of at most 16 MB, built once when one block holds them
    # all (smaller splits), else again for each chunk of draws. Each column's sums are the same
    # products summed alike, so the values do not depend on the blocks. Laid out (group, column, sample),
    # so that building a block multiplies contiguous rows (three times faster than sample-major).
    columns = np.ascontiguousarray(table.T)  # (width, n)
    del table
    member = np.stack([np.asarray(g, dtype=bool) for g in groups])  # (groups, n); x * True is x, x * False is 0
    per_block = max(1, 2_000_000 // (n * width))
    blocks = [slice(b, min(b + per_block, len(groups))) for b in range(0, len(groups), per_block)]
    buffer = np.empty((min(per_block, len(groups)), width, n))

    def block_table(b: slice) -> np.ndarray:
        """(n, width x groups of the block): each group's columns, zero outside the group."""
        k = b.stop - b.start
        out = buffer[:k]
        np.multiply(columns[None, :, :], member[b, None, :], out=out)
        return out.reshape(k * width, n).T

    built = block_table(blocks[0]) if len(blocks) == 1 else None
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)  # as in deviations_by_metric: the same stream of draws
    sums = np.empty((rounds, width * len(groups)))
    for start in range(0, rounds, chunk):
        draw = rng.integers(0, n, size=(min(chunk, rounds - start), n))
        rows = draw.shape[0]
        draw += (np.arange(rows) * n)[:, None]  # in place: each row's draws count in a row of their own
        counts = np.bincount(draw.ravel(), minlength=rows * n).reshape(rows, n)
        del draw
        counts = counts.astype(np.float64)
        for b in blocks:
            sums[start:start + rows, b.start * width:b.stop * width] = counts @ (built if built is not None else block_table(b))
    out = []
    for k, center in enumerate(centers):
        res = {}
        group = sums[:, k * width:(k + 1) * width]
        for m, (r, b) in zip(metrics, where):
            delta = _value(group[:, r], m, eps) - _value(group[:, b], m, eps)
            delta = np.where(sums[:, k * width + width - 1] > 0, delta, np.nan)  # none of the group drawn: no value
            dev = delta - center[m]
            res[m] = (center[m], dev[~np.isnan(dev)])
        out.append(res)
    return out


def deviations(run: Scores, base: Scores, metric: str, eps: float = 1e-10, rounds: int = DEFAULT_ROUNDS, seed: int = 0,
               idx: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """(full-sample delta run - base, bootstrap deltas minus it; NaN rounds dropped)."""
    return deviations_by_metric(run, base, (metric,), eps, rounds, seed, idx)[metric]


def paired_spread(run: Scores, base: Scores, metric: str, eps: float = 1e-10, rounds: int = DEFAULT_ROUNDS,
                  seed: int = 0) -> tuple[float, float]:
    """2.5/97.5 percentiles of (bootstrap delta - full-sample delta), samples paired by id."""
    _, dev = deviations(run, base, metric, eps, rounds, seed)
    if not dev.size:
        return (0.0, 0.0)
    return (float(np.percentile(dev, 2.5)), float(np.percentile(dev, 97.5)))


def p_value(center: float, dev: np.ndarray) -> float:
    """Two-sided, from the resampled deltas ``center + dev`` (the interval's distribution): twice the
    smaller share of them at or beyond 0 on either side, at most 1 (1.0 without resamples)."""
    if not dev.size or math.isnan(center):
        return 1.0
    deltas = center + dev
    tol = 1e-9 * max(1.0, abs(center))  # a delta of exactly 0 may come back as 1e-15 from center + (delta - center)
    return float(min(1.0, 2.0 * min(np.mean(deltas <= tol), np.mean(deltas >= -tol))))


def p_text(p: float | None, rounds: int) -> str:
    """A p-value for print: ``0.034``; ``< 0.001`` rather than ``0.000`` (or, where the resamples cannot
    resolve that, ``< 2 / rounds``: no resampled delta crossed 0); ``-`` for none."""
    if p is None or math.isnan(p):
        return "-"
    floor = max(0.001, 2.0 / rounds) if rounds > 0 else 0.001
    return f"< {floor:.3g}" if p < floor else f"{p:.3f}"


@dataclass(frozen=True)
class PairScores(Columns):
    """Per-sample scores of one model on one split, sorted by sample id (so two are aligned
    whenever their ids are equal). ``iou`` is NaN where the sample is left out of gIoU;
    ``in_ciou`` is False where it is left out of cIoU's sums."""

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> PairScores:
        by_id = {str(r["id"]): r for r in records}  # last write wins, as on resume
        ids = sorted(by_id)
        scores = [SampleScore.from_json(by_id[i]["score"]) for i in ids]
        return cls.of(ids, ScoreArrays.of(scores), [None if s.instances is None else s.instances.to_json() for s in scores])

    @classmethod
    def from_rows(cls, rows: Mapping[str, Sequence[Any]], matches: Mapping[str, Mapping[str, Any] | None] | None = None) -> PairScores:
        """From a log's score index: id -> the SampleScore's fields in declaration order, and id -> the
        stored instance match (``InstanceMatch.to_json``, None where the sample has none)."""
        ids = sorted(rows)
        return cls.of(ids, ScoreArrays.of_rows([rows[i] for i in ids]), None if matches is None else [matches.get(i) for i in ids])

    @classmethod
    def of(cls, ids: Sequence[str], arr: ScoreArrays, matches: Sequence[Mapping[str, Any] | None] | None = None) -> PairScores:
        raw = None if matches is None or all(m is None for m in matches) else cgf1.counts(matches)
        if arr.not_drawn.any():  # samples the protocol left out are in no metric, so in no comparison
            ids = [i for i, left_out in zip(ids, arr.not_drawn) if not left_out]
            raw = None if raw is None else raw[~arr.not_drawn]
            arr = arr.subset(~arr.not_drawn)
        return cls(tuple(ids), arr.inter, arr.union, arr.iou, arr.in_ciou, raw)

    def to_json(self) -> dict[str, Any]:
        return {
            "ids": list(self.ids),
            "inter": [int(v) for v in self.inter],
            "union": [int(v) for v in self.union],
            "iou": [None if np.isnan(v) else float(v) for v in self.iou],
            "in_ciou": [int(v) for v in self.in_ciou],
            # [n_dt, n_gt, tp at each threshold], or null where the sample has no match: what cgF1's bootstrap needs
            **({"instances": [None if row[0] < 0 else [int(v) for v in row] for row in self.instances]}
               if self.instances is not None else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairScores:
        n = len(data["ids"])
        cols = {k: data[k] for k in ("inter", "union", "iou", "in_ciou")}
        if any(len(v) != n for v in cols.values()):
            raise ValueError("columns of different lengths")
        raw = None
        if data.get("instances") is not None:
            rows = data["instances"]
            width = 2 + len(cgf1.IOU_THRESHOLDS)
            if len(rows) != n or any(r is not None and (len(r) != width or min(r) < 0) for r in rows):
                raise ValueError(f"instances must hold one row of {width} counts (or null) per sample")
            raw = np.array([[-1] * width if r is None else r for r in rows], dtype=np.int64)
        return cls(
            ids=tuple(str(i) for i in data["ids"]),
            inter=np.asarray(cols["inter"], dtype=np.float64),
            union=np.asarray(cols["union"], dtype=np.float64),
            iou=np.array([np.nan if v is None else v for v in cols["iou"]], dtype=np.float64),
            in_ciou=np.asarray(cols["in_ciou"], dtype=bool),
            instances=raw,
        )
