"""The report's figures, drawn with matplotlib and returned as ``data:image/png;base64`` URIs.

The report is one self-contained HTML file, so every figure is rasterised and inlined.
The Agg backend is selected before pyplot is imported: reports are rendered on headless
machines (CI, clusters) where an interactive backend would fail or open windows. Every
figure is closed after encoding so rendering many splits does not accumulate memory.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from harness.score.metrics import ScoreArrays
from harness.types import SampleScore

#: IoU thresholds of the precision curve: 0.50, 0.55, ..., 0.95 (COCO-style).
CURVE_THRESHOLDS: np.ndarray = np.round(np.arange(0.5, 0.951, 0.05), 2)
_DPI = 100


def png_data_uri(png: bytes) -> str:
    """Inline PNG bytes as a data URI (the report must not reference external files)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _finish(fig: Figure, ax: Any, legend_size: int = 7, grid_axis: str = "both") -> str:
    """The plots' common finish: legend outside the axes (clear of the data), light grid, open frame."""
    ax.legend(fontsize=legend_size, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis=grid_axis, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return _figure_uri(fig)


def _figure_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return png_data_uri(buf.getvalue())


@dataclass(frozen=True)
class ScoreColumns:
    """Per-sample score columns of one model on one split, read from its JSONL records.

    The plots need only these few numbers per sample, so the (possibly 20k-line) records
    are reduced once to arrays and the masks inside them are never decoded.
    """

    inter: np.ndarray
    union: np.ndarray
    iou: np.ndarray  # NaN where the sample is left out of gIoU
    failed: np.ndarray
    no_target: np.ndarray  # the dataset's flag (gt_empty in logs scored before it was recorded)

    @classmethod
    def of(cls, records: Sequence[Mapping[str, Any]]) -> ScoreColumns:
        scores = [s for s in (r.get("score") or {} for r in records) if not s.get("not_drawn")]  # in no metric

        def col(key: str, default: Any, dtype: Any) -> np.ndarray:
            return np.array([default if s.get(key) is None else s[key] for s in scores], dtype=dtype)

        return cls(
            inter=col("intersection", 0, np.float64),
            union=col("union", 0, np.float64),
            iou=col("iou", np.nan, np.float64),
            failed=col("failed", False, bool),
            no_target=np.array([bool(s.get("gt_empty")) if s.get("no_target") is None else bool(s["no_target"]) for s in scores],
                               dtype=bool),
        )

    @classmethod
    def of_rows(cls, rows: Sequence[Sequence[Any] | None]) -> ScoreColumns:
        """The same columns from a log's score index (SampleScore fields in declaration order, None
        for a record without a score); no record, no mask is parsed."""
        # What .of assumes of a missing score; samples the protocol did not draw are in no metric, so in no curve.
        blank = list(SampleScore(0, 0, 0, 0, None, False, False, False, False).to_json().values())
        arr = ScoreArrays.of_rows([blank if r is None else r for r in rows])
        arr = arr.subset(~arr.not_drawn)
        return cls(inter=arr.inter, union=arr.union, iou=arr.iou, failed=arr.failed, no_target=arr.no_target)

    def precision_curve(self, conventions: Mapping[str, Any], thresholds: np.ndarray = CURVE_THRESHOLDS) -> np.ndarray:
        """Prec@t in percent for each threshold, by the same rules as results.json's Prec@X.

        Mirrors ``harness.score.metrics.summarize``: plain I/U per sample, an empty union counts
        as its stored per-sample IoU (the empty-union rule that applied to it), a failed prediction scores 0 unless
        ``failure="as_empty"``, over the samples kept in gIoU (or only targeted ones under
        ``precision_over="targeted"``), so the curve passes through the table's values.
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            raw = np.where(self.union > 0, self.inter / np.where(self.union > 0, self.union, 1.0), np.nan_to_num(self.iou, nan=0.0))
        raw = np.where(self.failed & (conventions.get("failure", "zero") != "as_empty"), 0.0, raw)
        chosen = ~np.isnan(self.iou)
        if conventions.get("precision_over", "all") == "targeted":
            chosen &= ~self.no_target
        if not chosen.any():
            return np.full(len(thresholds), np.nan)
        return np.array([100.0 * float((raw[chosen] >= t).mean()) for t in thresholds])


def _label(text: str) -> str:
    """Model names are data: keep matplotlib from reading ``$..$`` as mathtext or hiding ``_name``."""
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _colors(n: int) -> list[Any]:
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def metric_bars(split: str, models: Sequence[str], results: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Grouped bars: per model, cIoU and gIoU with their bootstrap 95% intervals.

    ``results`` maps model -> the split's metrics dict from results.json. The intervals are
    percentile intervals and need not be symmetric, hence the two-sided error bars.
    """
    shown = [m for m in models if any(results.get(m, {}).get(k) is not None for k in ("ciou", "giou"))]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(shown) + 2.5), 3.4))
    x = np.arange(len(shown))
    width = 0.38
    for offset, (key, label, color) in enumerate((("ciou", "cIoU", "#3b6fb6"), ("giou", "gIoU", "#e08a2c"))):
        values, lows, highs = [], [], []
        for m in shown:
            res = results.get(m, {})
            v = res.get(key)
            ci = res.get(f"{key}_ci95")
            values.append(np.nan if v is None else float(v))
            lows.append(max(0.0, float(v) - float(ci[0])) if v is not None and ci else 0.0)
            highs.append(max(0.0, float(ci[1]) - float(v)) if v is not None and ci else 0.0)
        pos = x + (offset - 0.5) * width
        ax.bar(pos, values, width, label=label, color=color, yerr=[lows, highs], capsize=3, error_kw={"elinewidth": 1})
        for px, v, hi in zip(pos, values, highs):
            if not np.isnan(v):  # label above the interval's top so the error bar does not cross it
                ax.text(px, v + hi + 1.0, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(
        [_label(m) for m in shown], rotation=20 if len(shown) > 3 else 0, ha="right" if len(shown) > 3 else "center", fontsize=8
    )
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.set_title(_label(split) + ": cIoU and gIoU (95% CI)", fontsize=10)
    return _finish(fig, ax, legend_size=8, grid_axis="y")


def iou_histogram(split: str, columns: Mapping[str, ScoreColumns]) -> str | None:
    """Distribution of per-sample IoU per model (step outlines so several models stay legible).

    The mean hides whether a model is uniformly mediocre or bimodal (hit-or-miss), which is
    what the histogram shows.
    """
    data = {m: c.iou[~np.isnan(c.iou)] for m, c in columns.items()}
    data = {m: v for m, v in data.items() if v.size}
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    bins = [float(b) for b in np.linspace(0.0, 1.0, 21)]
    for (model, values), color in zip(data.items(), _colors(len(data))):
        weights = np.full(values.size, 100.0 / values.size)
        ax.hist(
            values,
            bins=bins,
            weights=weights,
            histtype="step",
            linewidth=1.6,
            color=color,
            label=_label(f"{model} (n={values.size})"),
        )
    ax.set_xlabel("per-sample IoU")
    ax.set_ylabel("% of samples")
    ax.set_xlim(0, 1)
    ax.set_title(_label(split) + ": per-sample IoU", fontsize=10)
    return _finish(fig, ax)


def precision_plot(split: str, columns: Mapping[str, ScoreColumns], conventions: Mapping[str, Any]) -> str | None:
    """Precision vs IoU threshold (0.50-0.95) per model: how fast each model's hits decay."""
    curves = {m: c.precision_curve(conventions) for m, c in columns.items()}
    curves = {m: v for m, v in curves.items() if not np.all(np.isnan(v))}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for (model, values), color in zip(curves.items(), _colors(len(curves))):
        ax.plot(CURVE_THRESHOLDS, values, marker="o", markersize=3, linewidth=1.5, color=color, label=_label(model))
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("precision (%)")
    ax.set_xticks(CURVE_THRESHOLDS[::2])
    ax.set_ylim(0, 102)
    ax.set_title(_label(split) + ": Prec@IoU threshold", fontsize=10)
    return _finish(fig, ax)


def slice_differences(split: str, a: str, b: str, rows: Sequence[Any]) -> str | None:
    """Per-slice paired differences (b - a) of cIoU and gIoU with their 95% intervals, one row per slice.

    ``rows`` are ``harness.publish.compare.Difference``; a slice without an interval (too few
    samples) is drawn as a hollow marker. The legend sits above the axes, clear of the data.
    """
    labels = list(dict.fromkeys((d.family, d.slice) for d in rows))
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.28 * len(labels)))
    y = np.arange(len(labels))[::-1]
    pos = {lab: y[k] for k, lab in enumerate(labels)}
    for metric, colour, shift in (("ciou", "#2f5fa7", 0.15), ("giou", "#c0392b", -0.15)):
        mine = [d for d in rows if d.metric == metric]
        with_ci = [d for d in mine if d.ci_lo is not None]
        without = [d for d in mine if d.ci_lo is None]
        if with_ci:
            ys = [pos[(d.family, d.slice)] + shift for d in with_ci]
            xs = [d.delta for d in with_ci]
            err = [[d.delta - d.ci_lo for d in with_ci], [d.ci_hi - d.delta for d in with_ci]]
            ax.errorbar(xs, ys, xerr=err, fmt="o", color=colour, ms=4, capsize=2, lw=1, label={"ciou": "cIoU", "giou": "gIoU"}[metric])
        if without:
            ax.plot([d.delta for d in without], [pos[(d.family, d.slice)] + shift for d in without], "o", mfc="none", color=colour, ms=4,
                    label=f"{'cIoU' if metric == 'ciou' else 'gIoU'} (n < min_n: no interval)")
    ax.axvline(0, color="#888", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(["whole split" if f == "all" else f"{f}: {s}" for f, s in labels], fontsize=7)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel(f"{b} − {a} (points), 95% paired-bootstrap interval", fontsize=8)
    ax.set_title(f"{split}: {b} − {a} per slice", fontsize=9, pad=22)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=7, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _figure_uri(fig)
