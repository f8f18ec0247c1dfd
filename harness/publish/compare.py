"""``harness compare RUN_A [RUN_B] [--models ...] [--markdown]``: is a difference between two models real?

For every pair of models (within a run, or across two runs scored under the same suite fingerprint
and conventions; anything else is refused with exit 2), per split and per slice, the paired
difference of cIoU and gIoU (on a suite scored on instances, SA-Co/Gold: cgF1, pmF1 and IL_MCC x100,
over its image–phrase pairs), **second minus first** in the order the models are listed (run A's
models before run B's), with a paired-bootstrap 95% interval and a two-sided p-value.

Samples are matched by id: both models are scored on the ids they share (the table says how many),
and every bootstrap round draws the same ids for both (``harness.score.paired``, the gate's
bootstrap: ``--rounds`` resamples, seed 0). The interval is the percentile interval of the
resampled differences, and p comes from the same resampled differences (twice the smaller share
on either side of 0), so p < 0.05 where the interval excludes 0. A p below what the resamples resolve
prints as a bound, never "0.000": "< 0.001" from 2,000 rounds on, "< 0.002" at the default 1,000.
Slices are resampled with their split: each round resamples the whole split and a
slice's difference is computed on the drawn samples that fall in it (one set of resamples for
every slice, so a 20k-sample split costs one bootstrap, not one per slice). A slice with fewer
shared samples than the slice definitions' ``min_n`` shows its difference and n, and no interval
or p-value.

Slices need the samples (loaded as ``harness report`` does); where they cannot be loaded, the
per-split rows are printed with a note. ``harness.load_run(path).compare(other)`` returns the same
rows as a DataFrame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.data.protocols import of_summary
from harness.errors import HarnessError
from harness.publish import mdtext
from harness.score.paired import DEFAULT_ROUNDS, PairScores, deviations_by_group, p_text, p_value, point

if TYPE_CHECKING:  # harness.publish.api calls this module: the Run type only, never an import at run time
    from harness.publish.api import Run

METRICS = ("ciou", "giou")
# A suite scored on instances (SA-Co/Gold) is compared on its own metrics, over its image–phrase pairs.
INSTANCE_SUITE_METRICS = ("cgf1", "pmf1", "il_mcc")
LABELS = {"ciou": "cIoU", "giou": "gIoU", "cgf1": "cgF1", "pmf1": "pmF1", "il_mcc": "IL_MCC x100"}


def metrics_of(conventions: Mapping[str, Any]) -> tuple[str, ...]:
    """The metrics a comparison of runs under these conventions reports, the suite's official one first:
    cIoU and gIoU, or on a suite scored on instances cgF1, pmF1 and IL_MCC (x100, in points like the rest)."""
    return INSTANCE_SUITE_METRICS if conventions.get("scoring") == "instances" else METRICS
ALL = "all"  # the slice column of a whole split's row


class NotComparable(HarnessError):
    """Runs scored under different suites or conventions (exit 2)."""


@dataclass(frozen=True)
class Side:
    """One model of one run, as it is named in the table."""

    label: str
    run: Run
    model: str


@dataclass(frozen=True)
class Difference:
    a: str
    b: str
    split: str
    family: str  # "all" for the whole split
    slice: str
    metric: str
    a_value: float
    b_value: float
    delta: float  # b - a, points
    ci_lo: float | None
    ci_hi: float | None
    p: float | None
    n: int

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    rows: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rounds: int = DEFAULT_ROUNDS


def check_comparable(runs: Sequence[Run]) -> None:
    first = runs[0]
    for other in runs[1:]:
        reasons = []
        if of_summary(other.doc["suite"]) != of_summary(first.doc["suite"]):
            reasons.append(f"protocol differs: {first.path} follows {of_summary(first.doc['suite'])!r}, {other.path} "
                           f"{of_summary(other.doc['suite'])!r} (docs/protocols.md)")
        if other.fingerprint != first.fingerprint:
            reasons.append(f"suite fingerprint differs: {first.path} {first.suite_name} {first.fingerprint} vs "
                           f"{other.path} {other.suite_name} {other.fingerprint}")
        diff = sorted(k for k in set(first.conventions) | set(other.conventions) if first.conventions.get(k) != other.conventions.get(k))
        if diff:
            reasons.append("conventions differ: " + ", ".join(
                f"{k} {first.conventions.get(k)!r} vs {other.conventions.get(k)!r}" for k in diff))
        if reasons:
            raise NotComparable(f"{first.path} and {other.path} are not comparable: " + "; ".join(reasons))


def sides(runs: Sequence[Run], models: Sequence[str] | None = None) -> list[Side]:
    """The models to compare, labelled ``model`` (one run) or ``<run dir>:model`` (two runs)."""
    names = [r.path.name for r in runs]
    tags = names if len(set(names)) == len(names) else [str(r.path) for r in runs]
    out = [Side(m if len(runs) == 1 else f"{tag}:{m}", run, m) for run, tag in zip(runs, tags) for m in run.models]
    if models:
        known = {s.label: s for s in out}
        unknown = [m for m in models if m not in known and not any(s.model == m for s in out)]
        if unknown:
            raise HarnessError(f"unknown model {', '.join(map(repr, unknown))} (valid: {', '.join(known)})")
        out = [s for s in out if s.label in models or s.model in models]
    if len(out) < 2:
        raise HarnessError(f"nothing to compare: {len(out)} model given ({', '.join(s.label for s in out) or 'none'}); "
                           "a comparison needs two")
    return out


def _restrict(p: PairScores, ids: Sequence[str], pos: Mapping[str, int]) -> PairScores:
    return p.take(np.array([pos[i] for i in ids], dtype=np.int64), ids)


def pair_rows(a: str, sa: PairScores, b: str, sb: PairScores, split: str, membership: Mapping[str, Mapping[str, set[str]]],
              eps: float, min_n: int, rounds: int, metrics: Sequence[str], out: Comparison) -> None:
    """The rows of one pair of models on one split: the whole split, then each slice (``membership``)."""
    common = sorted(set(sa.ids) & set(sb.ids))
    if not common:
        out.notes.append(f"{a} vs {b} on {split}: no sample id in common")
        return
    if len(common) != len(sa.ids) or len(common) != len(sb.ids):
        out.notes.append(f"{a} vs {b} on {split}: compared on the {len(common)} shared ids ({len(sa.ids)} and {len(sb.ids)} scored)")
    groups: list[tuple[str, str, list[str]]] = [(ALL, ALL, common)]
    for family, by_label in membership.items():
        for label, in_slice in by_label.items():
            members = [c for c in common if c in in_slice]
            if members:
                groups.append((family, label, members))
    pos_a, pos_b = {i: k for k, i in enumerate(sa.ids)}, {i: k for k, i in enumerate(sb.ids)}
    ra, rb = _restrict(sa, common, pos_a), _restrict(sb, common, pos_b)
    where = {i: k for k, i in enumerate(common)}
    masks = []
    for _, _, ids in groups:
        mask = np.zeros(len(common), dtype=bool)
        mask[[where[i] for i in ids]] = True
        masks.append(mask)
    # Intervals for the whole split and the slices large enough, all from one set of resamples of the split.
    wanted = [k for k, (family, _, ids) in enumerate(groups) if family == ALL or len(ids) >= min_n]
    devs = dict(zip(wanted, deviations_by_group(rb, ra, [masks[k] for k in wanted], metrics, eps, rounds)))
    for k, (family, label, ids) in enumerate(groups):
        for metric in metrics:
            va, vb = point(_restrict(sa, ids, pos_a), metric, eps), point(_restrict(sb, ids, pos_b), metric, eps)
            ci, p = None, None
            if k in devs and devs[k][metric][1].size:
                center, dev = devs[k][metric]
                ci = (center + float(np.percentile(dev, 2.5)), center + float(np.percentile(dev, 97.5)))
                p = p_value(center, dev)
            out.rows.append(Difference(a, b, split, family, label, metric, va, vb, vb - va, ci[0] if ci else None,
                                       ci[1] if ci else None, p, len(ids)))


def paired_differences(runs: Sequence[Run], models: Sequence[str] | None = None, splits: Sequence[str] | None = None,
                       metrics: Sequence[str] | None = None, rounds: int = DEFAULT_ROUNDS, with_slices: bool = True) -> Comparison:
    """Every pair of the chosen models x split (x slice) x metric (``metrics_of`` the runs' conventions when
    None); see the module docstring."""
    check_comparable(runs)
    metrics = metrics_of(runs[0].conventions) if metrics is None else metrics
    chosen = sides(runs, models)
    out = Comparison(rounds=rounds)
    eps = runs[0].eps
    slices_of: dict[tuple[int, str], dict[str, dict[str, set[str]]]] = {}
    min_n = 2
    if with_slices:
        try:
            min_n = runs[0].slice_definitions.min_n
        except HarnessError as exc:
            with_slices = False
            out.notes.append(f"slices left out: {exc}")
    for i, a in enumerate(chosen):
        for b in chosen[i + 1:]:
            for split in [s for s in a.run.splits(a.model) if s in b.run.splits(b.model) and (not splits or s in splits)]:
                key = (id(a.run), split)  # one suite fingerprint: either run's samples give the same slices
                if with_slices and key not in slices_of:
                    try:
                        slices_of[key] = a.run.membership(split)
                    except HarnessError as exc:
                        slices_of[key] = {}
                        out.notes.append(f"slices of {split} left out: {exc}")
                pair_rows(a.label, a.run.scores(a.model, split), b.label, b.run.scores(b.model, split), split,
                          slices_of.get(key, {}), eps, min_n, rounds, metrics, out)
    return out


def _num(v: float | None, signed: bool = False) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _cells(d: Difference, rounds: int = DEFAULT_ROUNDS) -> list[str]:
    ci = f"[{_num(d.ci_lo, True)}, {_num(d.ci_hi, True)}]" if d.ci_lo is not None else "-"
    where = "(all)" if d.family == ALL else f"{d.family}: {d.slice}"
    return [d.a, d.b, d.split, where, LABELS.get(d.metric, d.metric), _num(d.a_value), _num(d.b_value), _num(d.delta, True), ci,
            p_text(d.p, rounds), str(d.n)]


HEADER = ["A", "B", "split", "slice", "metric", "A", "B", "B - A", "95% CI", "p", "n"]


def _footer(c: Comparison) -> str:
    return (f"Values in percent; B - A in points, samples matched by id. Interval and p from a paired bootstrap "
            f"({c.rounds} resamples, seed 0); slices with fewer samples than min_n show no interval.")


def plain(c: Comparison) -> str:
    table = [HEADER] + [_cells(d, c.rounds) for d in c.rows]
    widths = [max(len(r[k]) for r in table) for k in range(len(HEADER))]
    right = {5, 6, 7, 9, 10}
    lines = ["  ".join(cell.rjust(w) if k in right else cell.ljust(w) for k, (cell, w) in enumerate(zip(r, widths))).rstrip()
             for r in table]
    return "\n".join([*lines, "", _footer(c), *(f"  - {n}" for n in c.notes)]) + "\n"


def _md(text: str) -> str:
    return mdtext.cell(text)  # "< 0.002" and arrows read as typed; only what Markdown would misread is escaped


def markdown(c: Comparison) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    lines += ["| " + " | ".join(_md(x) for x in _cells(d, c.rounds)) + " |" for d in c.rows]
    return "\n".join([*lines, "", _footer(c), *(f"- {_md(n)}" for n in c.notes)]) + "\n"
