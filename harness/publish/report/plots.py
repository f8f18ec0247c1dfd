"""The report's figures, drawn with matplotlib: embedded in the report as SVG data URIs (sharp at any width:
they fill the page's column) and written beside it, as SVG and PNG, for papers (``RUN/report/figures/``).

The report is one self-contained HTML file, so every figure is inlined; the files beside it are copies.
The Agg backend is selected before pyplot is imported: reports are rendered on headless
machines (CI, clusters) where an interactive backend would fail or open windows. Every
figure is closed after encoding so rendering many splits does not accumulate memory.
Every plot draws a model in the colour ``harness.publish.colours.model_colours`` gives it (the
caller's map), so a model has one colour across the report; legends sit outside the data.
"""

from __future__ import annotations

import base64
import functools
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from harness.files import write_bytes_atomic
from harness.score.metrics import ScoreArrays
from harness.types import SampleScore

#: IoU thresholds of the precision curve: 0.50, 0.55, ..., 0.95 (COCO-style).
CURVE_THRESHOLDS: np.ndarray = np.round(np.arange(0.5, 0.951, 0.05), 2)
_PNG_DPI = 200  # the PNG beside the report is for print
# SVG ids are hashed from this salt, not at random, and no date is written: the same run renders the same bytes.
matplotlib.rcParams["svg.hashsalt"] = "harness-report"
_STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10, "ytick.labelsize": 10,
          "legend.fontsize": 10}
P = ParamSpec("P")
R = TypeVar("R")
FIGSIZE = (7.0, 3.6)  # inches: about 700 px wide at the SVG's 100 px per inch, shown at the column's width


def png_data_uri(png: bytes) -> str:
    """Inline PNG bytes as a data URI (the report must not reference external files)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def svg_data_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


@dataclass(frozen=True)
class Drawn:
    """A figure of the report: its embedded SVG, and its files beside the report (relative to it)."""

    uri: str
    files: tuple[str, ...]
    alt: str


def _file_stem(name: str) -> str:
    """Split and model names are data: a file name keeps letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "figure"


class FigureWriter:
    """Encodes each figure once as SVG (embedded and written) and once as PNG (written), into ``directory``
    (``RUN/report/figures``; None: embedded only). ``finish`` removes figures of an earlier render not
    drawn this time, so the folder is exactly this report's."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.written: list[Path] = []
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def __call__(self, fig: Figure, name: str, alt: str) -> Drawn:
        svg, png = io.BytesIO(), io.BytesIO()
        try:
            # The tight box (what bbox_inches="tight" draws the figure once more to find) is found once for both files.
            box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.1)  # type: ignore[attr-defined]
            fig.savefig(svg, format="svg", bbox_inches=box, metadata={"Date": None})
            if self.directory is not None:
                fig.savefig(png, format="png", dpi=_PNG_DPI, bbox_inches=box)
        finally:
            plt.close(fig)
        files: tuple[str, ...] = ()
        if self.directory is not None:
            stem = _file_stem(name)
            taken = {p.stem for p in self.written}
            stem = next(f"{stem}-{k}" for k in range(1, len(taken) + 2) if f"{stem}-{k}" not in taken) if stem in taken else stem
            for ext, data in (("svg", svg.getvalue()), ("png", png.getvalue())):
                path = self.directory / f"{stem}.{ext}"
                write_bytes_atomic(path, data)
                self.written.append(path)
            files = tuple(f"{self.directory.name}/{stem}.{ext}" for ext in ("svg", "png"))
        return Drawn(svg_data_uri(svg.getvalue()), files, alt)

    def finish(self) -> None:
        if self.directory is None:
            return
        keep = set(self.written)
        for p in self.directory.iterdir():
            if p.suffix in (".svg", ".png") and p not in keep:
                p.unlink()


def _styled(draw: Callable[P, R]) -> Callable[P, R]:
    """Draw under the report's font sizes (text takes them when it is created, so the whole drawing runs in them)."""
    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with plt.rc_context(cast(Any, _STYLE)):
            return draw(*args, **kwargs)
    return wrapper


def _figure(width: float = FIGSIZE[0], height: float = FIGSIZE[1]) -> tuple[Figure, Any]:
    return plt.subplots(figsize=(width, height))


def _finish(ax: Any, grid_axis: str = "both") -> None:
    """The plots' common finish: legend outside the axes (clear of the data), light grid, open frame."""
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis=grid_axis, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


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


@_styled
def metric_bars(split: str, models: Sequence[str], results: Mapping[str, Mapping[str, Any]], colours: Mapping[str, str]) -> Figure | None:
    """Per model, cIoU (solid) and gIoU (hatched) bars in the model's colour, with their bootstrap 95% intervals.

    ``results`` maps model -> the split's metrics dict from results.json. The intervals are
    percentile intervals and need not be symmetric, hence the two-sided error bars.
    """
    shown = [m for m in models if any(results.get(m, {}).get(k) is not None for k in ("ciou", "giou"))]
    if not shown:
        return None
    fig, ax = _figure()
    x = np.arange(len(shown))
    width = 0.38
    for offset, (key, hatch) in enumerate((("ciou", None), ("giou", "///"))):
        values, lows, highs = [], [], []
        for m in shown:
            res = results.get(m, {})
            v = res.get(key)
            ci = res.get(f"{key}_ci95")
            values.append(np.nan if v is None else float(v))
            lows.append(max(0.0, float(v) - float(ci[0])) if v is not None and ci else 0.0)
            highs.append(max(0.0, float(ci[1]) - float(v)) if v is not None and ci else 0.0)
        pos = x + (offset - 0.5) * width
        colour = [colours[m] for m in shown]
        ax.bar(pos, values, width, color=colour if hatch is None else "white", edgecolor=colour, hatch=hatch, linewidth=1.2,
               yerr=[lows, highs], capsize=3, error_kw={"elinewidth": 1})
        for px, v, hi in zip(pos, values, highs):
            if not np.isnan(v):  # label above the interval's top so the error bar does not cross it
                ax.text(px, v + hi + 1.0, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([_label(m) for m in shown], rotation=20 if len(shown) > 4 else 0, ha="right" if len(shown) > 4 else "center")
    ax.set_ylim(0, 108)
    ax.set_ylabel("%")
    ax.set_title(_label(split) + ": cIoU and gIoU (95% CI)")
    ax.legend(handles=[Patch(facecolor="#555", edgecolor="#555", label="cIoU"),
                       Patch(facecolor="white", edgecolor="#555", hatch="///", label="gIoU")],
              frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


@_styled
def iou_histogram(split: str, columns: Mapping[str, ScoreColumns], colours: Mapping[str, str]) -> Figure | None:
    """Distribution of per-sample IoU per model (step outlines so several models stay legible).

    The mean hides whether a model is uniformly mediocre or bimodal (hit-or-miss), which is
    what the histogram shows.
    """
    data = {m: c.iou[~np.isnan(c.iou)] for m, c in columns.items()}
    data = {m: v for m, v in data.items() if v.size}
    if not data:
        return None
    fig, ax = _figure()
    bins = [float(b) for b in np.linspace(0.0, 1.0, 21)]
    for model, values in data.items():
        weights = np.full(values.size, 100.0 / values.size)
        ax.hist(values, bins=bins, weights=weights, histtype="step", linewidth=1.8, color=colours[model],
                label=_label(f"{model} (n={values.size})"))
    ax.set_xlabel("per-sample IoU")
    ax.set_ylabel("% of samples")
    ax.set_xlim(0, 1)
    ax.set_title(_label(split) + ": per-sample IoU")
    _finish(ax)
    return fig


@_styled
def precision_plot(split: str, columns: Mapping[str, ScoreColumns], conventions: Mapping[str, Any],
                   colours: Mapping[str, str]) -> Figure | None:
    """Precision vs IoU threshold (0.50-0.95) per model: how fast each model's hits decay."""
    curves = {m: c.precision_curve(conventions) for m, c in columns.items()}
    curves = {m: v for m, v in curves.items() if not np.all(np.isnan(v))}
    if not curves:
        return None
    fig, ax = _figure()
    for model, values in curves.items():
        ax.plot(CURVE_THRESHOLDS, values, marker="o", markersize=4, linewidth=1.8, color=colours[model], label=_label(model))
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("precision (%)")
    ax.set_xticks(CURVE_THRESHOLDS[::2])
    ax.set_ylim(0, 102)
    ax.set_title(_label(split) + ": Prec@IoU threshold")
    _finish(ax)
    return fig


@_styled
def slice_differences(split: str, first: str, second: str, rows: Sequence[Any], colour: str) -> Figure | None:
    """Per-slice paired differences ``first − second`` of the comparison's first two metrics (cIoU as circles and
    gIoU as squares; cgF1 and pmF1 on a suite scored on instances) with their 95% intervals, one row per slice,
    in the first model's colour.

    ``rows`` are ``harness.publish.compare.Difference`` oriented so that ``b`` is ``first``; a slice without an
    interval (too few samples) is drawn as a hollow marker. The legend sits above the axes, clear of the data.
    """
    labels = list(dict.fromkeys((d.family, d.slice) for d in rows))
    if not labels:
        return None
    fig, ax = _figure(FIGSIZE[0], 1.2 + 0.3 * len(labels))
    y = np.arange(len(labels))[::-1]
    pos = {lab: y[k] for k, lab in enumerate(labels)}
    from harness.publish.compare import LABELS

    shown = list(dict.fromkeys(d.metric for d in rows))[:2]
    for metric, marker, shift in zip(shown, ("o", "s"), (0.15, -0.15)):
        name = LABELS.get(metric, metric)
        mine = [d for d in rows if d.metric == metric]
        with_ci = [d for d in mine if d.ci_lo is not None]
        without = [d for d in mine if d.ci_lo is None]
        if with_ci:
            ys = [pos[(d.family, d.slice)] + shift for d in with_ci]
            err = [[d.delta - d.ci_lo for d in with_ci], [d.ci_hi - d.delta for d in with_ci]]
            ax.errorbar([d.delta for d in with_ci], ys, xerr=err, fmt=marker, color=colour, ms=5, capsize=2, lw=1.2, label=name)
        if without:
            ax.plot([d.delta for d in without], [pos[(d.family, d.slice)] + shift for d in without], marker, mfc="none", color=colour,
                    ms=5, label=f"{name} (n < min_n: no interval)")
    ax.axvline(0, color="#888", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([_label("whole split" if f == "all" else f"{f}: {s}") for f, s in labels])
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel(_label(f"{first} − {second} (points), 95% paired-bootstrap interval"))
    ax.set_title(_label(f"{split}: {first} − {second} per slice"), pad=24)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig
