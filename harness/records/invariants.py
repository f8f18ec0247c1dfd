"""What every stored score must satisfy, checked on every line a reader loads.

A score is derived from its mask and the ground truth (harness/score/scoring.py), and whatever
the conventions (ignore pixels, polygon overlap, failure policy), the derivation guarantees:

- the four counts are non-negative integers;
- ``0 <= intersection <= min(pred_area, gt_area)`` and ``union = pred_area + gt_area - intersection``;
- ``pred_area`` and ``gt_area`` are at most h·w of the stored mask's RLE header, where it has one;
- ``0 <= iou <= 1``, and where the union is not empty (and the sample did not fail) ``iou`` is
  ``intersection / (union + giou_eps)``; ``0 <= box_iou <= 1``;
- ``gt_empty`` and ``pred_empty`` say whether those areas are 0; a failed prediction has no
  predicted pixel; a sample the protocol did not draw has no count but its ground-truth area;
- an instance match (suites scored on instances) has non-negative integer ``n_dt``, ``n_gt`` and
  ``annotator``, and one true-positive count per IoU threshold, none above min(n_dt, n_gt), none above
  the count at a lower threshold; a failed prediction has no detection.

A line that breaks one was edited by hand or written by broken code: it is refused with its file
and line, and ``harness rescore RUN`` derives it again from its mask. These checks are arithmetic
on the score index (no mask is decoded); whether a score is what its mask scores is the spot
re-derivation's job (harness/records/rederive.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.records.score_index import SCORE_FIELDS, IndexEntry
from harness.types import IOU_THRESHOLDS

_COL = {name: k for k, name in enumerate(SCORE_FIELDS)}
# |iou - I/(U+eps)|: the stored iou is the same division, written as a JSON float (exact round trip).
_IOU_TOLERANCE = 1e-9


class UntrustedRunError(HarnessError):
    """A stored run whose files disagree with each other: a results.json that is not what its logs give, a
    stored score that breaks an invariant or is not what its mask scores. Read-only commands refuse it
    (exit 2), naming the file and the fix."""


class BrokenScoreError(UntrustedRunError):
    """A stored score that breaks an invariant no derivation can break; names the file and line."""


def line_number(path: Path, offset: int) -> int:
    """The 1-based line of the byte ``offset`` of a log (counted only when a message needs it)."""
    with path.open("rb") as fh:
        return fh.read(offset).count(b"\n") + 1


def _broken(m: np.ndarray, pixels: np.ndarray, failed: np.ndarray, giou_eps: float) -> list[tuple[np.ndarray, str]]:
    """(rows that break it, the invariant) for each invariant, vectorised over the rows."""
    c = {name: m[:, k] for name, k in _COL.items()}
    inter, union, gt, pred, iou, box = (c["intersection"], c["union"], c["gt_area"], c["pred_area"], c["iou"], c["box_iou"])
    drawn = c["not_drawn"] != 1
    counts = np.stack([inter, union, gt, pred], axis=1)
    with np.errstate(invalid="ignore"):
        bad_count = ~np.isfinite(counts).all(1) | (counts < 0).any(1) | (counts != np.floor(counts)).any(1)
        has_px = ~np.isnan(pixels)
        computed = np.where(union > 0, inter / (union + giou_eps), np.nan)
        checks = [
            (bad_count, "intersection, union and both areas are non-negative integers"),
            (drawn & ((inter > pred) | (inter > gt)), "intersection <= min(pred_area, gt_area)"),
            (drawn & (union != pred + gt - inter), "union = pred_area + gt_area - intersection"),
            (has_px & ((pred > pixels) | (gt > pixels)), "pred_area and gt_area <= h*w of the mask's RLE header"),
            (~np.isnan(iou) & ((iou < 0) | (iou > 1)), "0 <= iou <= 1"),
            (drawn & ~failed & (union > 0) & ~np.isnan(iou) & (np.abs(iou - computed) > _IOU_TOLERANCE),
             f"iou = intersection / (union + giou_eps {giou_eps:g})"),
            (~np.isnan(box) & ((box < 0) | (box > 1)), "0 <= box_iou <= 1"),
            (drawn & ((c["gt_empty"] == 1) != (gt == 0)), "gt_empty is gt_area == 0"),
            (drawn & ((c["pred_empty"] == 1) != (pred == 0)), "pred_empty is pred_area == 0"),
            (drawn & failed & (pred != 0), "a failed prediction has no predicted pixel"),
            (~drawn & ((inter != 0) | (union != 0) | (pred != 0)), "a sample not drawn has no intersection, union or prediction"),
        ]
    return checks


def check_entries(entries: Sequence[IndexEntry], path: Path, giou_eps: float, run_root: Path | None = None) -> None:
    """Refuse, naming ``path``:line and the fix, the first entry without a usable score or whose score
    breaks an invariant."""
    unusable = next((e for e in entries if e.row is None), None)
    if unusable is not None:
        raise _error(path, unusable, "is missing or not a score (other fields than a SampleScore's)", run_root)
    scored = list(entries)
    if not scored:
        return
    try:
        m = np.array([e.row for e in scored], dtype=np.float64).reshape(len(scored), len(SCORE_FIELDS))
    except (TypeError, ValueError) as exc:  # a string where a count belongs
        bad = next(e for e in scored if not _numeric(e.row or []))
        raise _error(path, bad, f"a field is not a number ({exc})", run_root) from None
    pixels = np.array([np.nan if e.pixels is None else e.pixels for e in scored], dtype=np.float64)
    failed = np.array([e.failed for e in scored], dtype=bool)
    for rows, invariant in _broken(m, pixels, failed, giou_eps):
        if rows.any():
            e = scored[int(np.flatnonzero(rows)[0])]
            row = e.row or []
            got = ", ".join(f"{k} {row[_COL[k]]!r}" for k in ("intersection", "union", "gt_area", "pred_area", "iou"))
            more = int(rows.sum()) - 1
            raise _error(path, e, f"breaks '{invariant}' ({got}{f', h*w {e.pixels}' if e.pixels is not None else ''})"
                         + (f"; {more} more line{'s' if more != 1 else ''} of this log break it too" if more else ""), run_root)
    for e in scored:
        broken = None if e.instances is None else _broken_match(e)
        if broken is not None:
            raise _error(path, e, f"breaks '{broken}' (instances {e.instances!r})", run_root)


def _broken_match(e: IndexEntry) -> str | None:
    """The invariant an entry's instance match breaks, or None (see the module docstring)."""
    m = e.instances
    if m is None:
        return None
    if not isinstance(m, dict) or set(m) != {"n_dt", "n_gt", "annotator", "tp"}:
        return "an instance match is {n_dt, n_gt, annotator, tp}"
    counts, tp = [m["n_dt"], m["n_gt"], m["annotator"]], m["tp"]
    if not all(type(v) is int and v >= 0 for v in counts) or not (isinstance(tp, list) and len(tp) == len(IOU_THRESHOLDS)
                                                                  and all(type(v) is int for v in tp)):
        return f"n_dt, n_gt and annotator are non-negative integers and tp holds {len(IOU_THRESHOLDS)} integers"
    if not all(0 <= v <= min(m["n_dt"], m["n_gt"]) for v in tp) or any(b > a for a, b in itertools.pairwise(tp)):
        return "0 <= tp <= min(n_dt, n_gt) at every IoU threshold, and never more at a higher one"
    if e.failed and m["n_dt"] != 0:
        return "a failed prediction has no detection"
    return None


def _numeric(row: Sequence[object]) -> bool:
    return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, str)) for v in row)


def _error(path: Path, e: IndexEntry, what: str, run_root: Path | None) -> BrokenScoreError:
    run = run_root if run_root is not None else path.parent.parent
    return BrokenScoreError(
        f"{path}:{line_number(path, e.offset)}: the stored score of {e.id!r} {what}: no derivation gives that, so the line "
        f"was edited or written by broken code. Run `harness rescore {run}` to derive every score again from its mask")
