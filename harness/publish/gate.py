"""``harness gate RUN --baseline FILE_OR_RUN``: fail CI when a metric drops for real.

Exit codes (``EXIT_*`` below), stable for CI scripts:

- 0: no gated metric fell by more than ``--max-drop`` with significance;
- 1: at least one did: the drop (run minus baseline, in points) is below ``-max_drop`` *and*
  its paired-bootstrap 95% interval lies entirely below zero. Where the baseline has no
  per-sample scores (``--metrics-only`` baselines, a plain results.json) or the metric is not
  cIoU/gIoU (or, on a suite scored on instances, cgF1, pmF1 and IL_MCC, bootstrapped over the
  image–phrase pairs), the drop alone decides (plain tolerance); IL_MCC is gated x100;
- 2: the two are not comparable, or the gate would check nothing: different suite fingerprint,
  different conventions, different sample ids, a gated model x split missing from the run, an
  unknown metric, model or split name (the valid names are listed), a run that is partial
  (``--limit`` other than the baseline's, missing ids, shards not merged) or whose failed share
  exceeds ``--max-failed`` (unless ``--allow-partial``), no row gated at all ("nothing
  gated"), or a run (or run-directory baseline) whose stored scores come from another scoring
  version than this harness's (``harness rescore RUN`` fixes it); every reason is listed;
- 3: the inputs cannot be read (missing run, malformed baseline) or the command line is wrong.

``--two-sided`` also fails a significant *rise* beyond the tolerance: for a deterministic
fixture model (shapes-reasoner in CI) any change is a change in scoring, up or down.

The paired bootstrap pairs samples by id and resamples ids with replacement (``--rounds``,
seed 0): each round computes the metric on the same resampled ids for the run and the
baseline and takes the difference. The interval printed is the official difference
(results.json values) plus the 2.5/97.5 percentiles of the bootstrap deviations, so a
change in aggregation with identical per-sample scores shows as a zero-width interval
around a real drop, and fails. Output is a plain-text table on the terminal; ``--markdown FILE``
(or ``-`` for stdout) writes the Markdown table for a pull-request comment.

With ``--allow-partial`` a partial run is gated on the samples it has: where the run's ids are a
subset of the baseline's and both have per-sample scores, cIoU and gIoU of the baseline are
recomputed on those ids (other metrics cannot be, and are not gated); every such row says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.data.conventions import Conventions
from harness.data.protocols import of_summary
from harness.publish import mdtext
from harness.publish.baseline import Baseline
from harness.publish.compare import LABELS  # one name per metric, as compare prints it
from harness.publish.standing import data_text, missing_samples
from harness.score.paired import DEFAULT_ROUNDS, INSTANCE_METRICS, PairScores, paired_spread, point, scale

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_INCOMPARABLE = 2
EXIT_INPUT_ERROR = 3

BOOTSTRAPPED = ("ciou", "giou")
_MAX_EXAMPLES = 3
DEFAULT_CONVENTIONS = Conventions().to_dict()
# Counts, flags and intervals of a results.json split: not metrics a gate can compare.
_NOT_METRICS = {"n", "n_records", "n_expected", "n_split", "n_failed", "n_ciou", "n_giou", "n_box", "n_no_target", "n_targeted_empty_gt",
                "n_not_drawn", "complete"}


@dataclass(frozen=True)
class Row:
    model: str
    split: str
    metric: str
    base: float | None
    run: float | None
    delta: float | None
    ci: tuple[float, float] | None  # of the delta; None under plain tolerance
    n: int | None
    failed: bool
    verdict: str

    @property
    def gated(self) -> bool:
        """False where nothing was compared (no baseline value, a metric not recomputable)."""
        return not self.verdict.startswith("not gated")


@dataclass
class GateResult:
    reasons: list[str] = field(default_factory=list)  # non-empty: not comparable
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.reasons:
            return EXIT_INCOMPARABLE
        return EXIT_REGRESSION if any(r.failed for r in self.rows) else EXIT_PASS


def _value(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _examples(ids: set[str]) -> str:
    shown = sorted(ids)[:_MAX_EXAMPLES]
    return ", ".join(shown) + (f" and {len(ids) - len(shown)} more" if len(ids) > len(shown) else "")


def metric_names(base: Baseline) -> list[str]:
    """The metrics a gate can compare: numeric values of the baseline's results."""
    names = {k for by in base.results.values() for res in by.values() for k, v in res.items()
             if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return sorted(names)


def resolve_metrics(asked: Sequence[str], valid: Sequence[str]) -> tuple[list[str], list[str]]:
    """(metrics as spelt in results.json, reasons): names match case-insensitively (cIoU is ciou)."""
    by_lower = {v.lower(): v for v in valid}
    chosen, unknown = [], []
    for name in asked:
        hit = name if name in valid else by_lower.get(name.lower())
        if hit is None:
            unknown.append(name)
        elif hit not in chosen:
            chosen.append(hit)
    reasons = [f"unknown metric {m!r} (valid: {', '.join(valid) or 'none'})" for m in unknown]
    return chosen, reasons


def partial_reasons(run: Baseline, base: Baseline, pairs: Sequence[tuple[str, str]],
                    max_failed: float) -> dict[tuple[str, str], str]:
    """Why each model x split of the run is not a full, clean run to compare (absent: it is)."""
    out: dict[tuple[str, str], str] = {}
    run_limit, base_limit = run.from_run.get("limit"), base.from_run.get("limit")
    for model, split in pairs:
        res = run.results.get(model, {}).get(split)
        if res is None:
            continue
        why = []
        if missing_samples(res):  # a --limit cut and failures have reasons of their own below
            why.append(f"partial: {res.get('n_records')} of {res.get('n_expected')} predicted (missing ids or shards not merged)")
        if data_text(res):  # the copy of the data the run read is short of the suite's official counts
            why.append(f"partial: {data_text(res)} (the data on disk is short of the official counts)")
        if run_limit is not None and run_limit != base_limit:
            why.append(f"partial: run with --limit {run_limit} ({res.get('n_expected')} samples), baseline "
                       + (f"with --limit {base_limit}" if base_limit is not None else "over the full split"))
        # A share of the samples the model was asked about: those its protocol did not draw are neither.
        n_failed = int(res.get("n_failed") or 0)
        n_records = int(res.get("n_records") or 0) - int(res.get("n_not_drawn") or 0)
        if n_failed and n_failed > max_failed * n_records:
            why.append(f"{n_failed} of {n_records} samples failed (over --max-failed {max_failed:g})")
        if why:
            out[(model, split)] = "; ".join(why)
    return out


def _restrict(p: PairScores, ids: Sequence[str]) -> PairScores:
    keep = set(ids)
    return p.take(np.array([i in keep for i in p.ids], dtype=bool), [i for i in p.ids if i in keep])


def _subset_baseline(run: Baseline, base: Baseline, pairs: Sequence[tuple[str, str]]) -> tuple[Baseline, list[str]]:
    """The baseline restricted to the run's ids where the run has a subset of them (--allow-partial)."""
    scores = {m: dict(by) for m, by in base.scores.items()}
    results = {m: {s: dict(r) for s, r in by.items()} for m, by in base.results.items()}
    notes = []
    for model, split in pairs:
        rs, bs = run.scores.get(model, {}).get(split), base.scores.get(model, {}).get(split)
        if rs is None or bs is None or rs.ids == bs.ids or not set(rs.ids) <= set(bs.ids):
            continue
        sub = _restrict(bs, rs.ids)
        eps = float(base.conventions.get("ciou_eps", 1e-10))
        scores[model][split] = sub
        recomputed = [*BOOTSTRAPPED, *(INSTANCE_METRICS if sub.instances is not None else ())]
        # in results.json's units (IL_MCC a coefficient): _row scales them as it scales a stored value
        results[model][split] = {**{m: point(sub, m, eps) / scale(m) for m in recomputed}, "n": len(sub.ids), "restricted": True}
        notes.append(f"{model}/{split}: baseline recomputed on the run's {len(sub.ids)} of its {len(bs.ids)} samples "
                     f"({', '.join(LABELS.get(m, m) for m in recomputed)} only)")
    return Baseline(base.where, base.suite, base.conventions, base.models, results, base.ids, scores, base.from_run), notes


def incomparable(run: Baseline, base: Baseline, pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Every reason the run cannot be gated against the baseline (empty: comparable)."""
    reasons = []
    rf, bf = run.suite.get("fingerprint"), base.suite.get("fingerprint")
    if rf != bf:
        reasons.append(
            (f"protocol differs: the run follows {of_summary(run.suite)!r}, the baseline {of_summary(base.suite)!r} "
             "(docs/protocols.md: numbers of two protocols are never compared); "
             if of_summary(run.suite) != of_summary(base.suite) else "") +
            f"suite fingerprint differs: run {run.suite.get('name')} v{run.suite.get('version')} {rf} vs baseline "
            f"{base.suite.get('name')} v{base.suite.get('version')} {bf} (data, splits or conventions changed; "
            "if intended, save a new baseline with `harness baseline save`)"
        )
    # A convention a file predates (added to the harness later) held its default when that file was written.
    rc, bc = {**DEFAULT_CONVENTIONS, **run.conventions}, {**DEFAULT_CONVENTIONS, **base.conventions}
    diff = sorted(k for k in set(rc) | set(bc) if rc.get(k) != bc.get(k))
    if diff:
        reasons.append("conventions differ: " + ", ".join(f"{k} run={rc.get(k)!r} baseline={bc.get(k)!r}" for k in diff))
    for model, split in pairs:
        if split not in run.results.get(model, {}):
            reasons.append(f"{model}/{split}: the run has no results for it (baseline {base.where} has)")
            continue
        rs, bs = run.scores.get(model, {}).get(split), base.scores.get(model, {}).get(split)
        if rs is not None and bs is not None:
            if rs.ids != bs.ids:
                missing, extra = set(bs.ids) - set(rs.ids), set(rs.ids) - set(bs.ids)
                parts = [f"{len(rs.ids)} ids in the run vs {len(bs.ids)} in the baseline"]
                if missing:
                    parts.append(f"missing from the run: {_examples(missing)}")
                if extra:
                    parts.append(f"not in the baseline: {_examples(extra)}")
                reasons.append(f"{model}/{split}: different sample ids ({'; '.join(parts)})")
            continue
        if base.results[model][split].get("restricted"):
            continue
        ri, bi = run.ids.get(model, {}).get(split), base.ids.get(model, {}).get(split)
        if ri is not None and bi is not None:
            same = ri == bi
        else:  # a metrics-only baseline from a results.json: compare the counts the split had
            rn, bn = run.results[model][split].get("n_expected"), base.results[model][split].get("n_expected")
            ri, bi, same = {"n": rn}, {"n": bn}, rn == bn
        if not same:
            reasons.append(f"{model}/{split}: different sample ids (run {ri.get('n')} samples, baseline {bi.get('n')}; "
                           "the id lists differ)")
    return reasons


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _row(run: Baseline, base: Baseline, model: str, split: str, metric: str, max_drop: float, rounds: int, seed: int,
         two_sided: bool = False) -> Row:
    # A coefficient (IL_MCC, in [-1, 1]) is gated in percent like every other metric, so --max-drop's
    # points mean the same for it: a fall of 0.2 in MCC is 20 points, never "within tolerance".
    times = scale(metric.split("@")[0])
    b = _scaled(_value(base.results[model][split].get(metric)), times)
    r = _scaled(_value(run.results[model][split].get(metric)), times)
    n = run.results[model][split].get(f"n_{metric}", run.results[model][split].get("n"))
    rs, bs = run.scores.get(model, {}).get(split), base.scores.get(model, {}).get(split)
    paired = rs is not None and bs is not None and (
        metric in BOOTSTRAPPED or (metric in INSTANCE_METRICS and rs.instances is not None and bs.instances is not None))
    if base.results[model][split].get("restricted"):
        if not paired:
            return Row(model, split, metric, None, r, None, None, n, False, "not gated (partial run: not recomputable)")
        eps = float(run.conventions.get("ciou_eps", 1e-10))
        r = _value(point(run.scores[model][split], metric, eps))  # both sides by the same reduction
    if b is None:
        return Row(model, split, metric, b, r, None, None, n, False, "not gated (no baseline value)")
    if r is None:
        return Row(model, split, metric, b, r, None, None, n, True, "❌ FAIL: the run has no value")
    delta = r - b
    ci = None
    if paired:
        assert rs is not None and bs is not None
        eps = float(run.conventions.get("ciou_eps", 1e-10))
        lo, hi = paired_spread(rs, bs, metric, eps, rounds, seed)
        ci = (delta + lo, delta + hi)
    dropped = delta < -max_drop and (ci is None or ci[1] < 0)
    rose = two_sided and delta > max_drop and (ci is None or ci[0] > 0)
    failed = dropped or rose
    if failed:
        verdict = ("❌ FAIL" if dropped else "❌ FAIL: rose (two-sided)") + ("" if ci is not None else " (tolerance only)")
    elif abs(delta) > max_drop and (delta < 0 or two_sided):
        verdict = "✅ pass: drop not significant" if delta < 0 else "✅ pass: rise not significant"
    elif delta < 0:
        verdict = "✅ pass: within tolerance"
    else:
        verdict = "✅ pass"
    return Row(model, split, metric, b, r, delta, ci, n, failed, verdict)


def gate(run: Baseline, base: Baseline, metrics: Sequence[str] = ("ciou",), max_drop: float = 0.5,
         models: Sequence[str] | None = None, splits: Sequence[str] | None = None, rounds: int = DEFAULT_ROUNDS,
         seed: int = 0, two_sided: bool = False, max_failed: float = 0.0, allow_partial: bool = False) -> GateResult:
    """Compare a run (read as a Baseline) with a baseline; see the module docstring."""
    out = GateResult()
    chosen = base.select(models, splits)
    pairs = chosen.pairs()
    metrics, out.reasons = resolve_metrics(metrics, metric_names(chosen if pairs else base))
    for m in models or []:
        if m not in base.results:
            out.reasons.append(f"model {m!r} is not in the baseline {base.where} (valid: {', '.join(base.results) or 'none'})")
    for s in splits or []:
        if not any(s in by for by in chosen.results.values()):
            have = sorted({sp for by in base.select(models, None).results.values() for sp in by})
            out.reasons.append(f"split {s!r} is not in the baseline {base.where} (valid: {', '.join(have) or 'none'})")
    if not pairs and not out.reasons:
        out.reasons.append(f"nothing to gate: the baseline {base.where} has no results for the chosen models and splits")
    partial = partial_reasons(run, base, pairs, max_failed)
    if partial and not allow_partial:
        out.reasons += [f"{m}/{s}: {why}; not comparable without --allow-partial" for (m, s), why in partial.items()]
    if allow_partial:
        base, notes = _subset_baseline(run, base, pairs)
        out.notes += notes
    out.reasons += incomparable(run, base, pairs)
    if out.reasons:
        return out
    for model, split in pairs:
        for metric in metrics:
            row = _row(run, base, model, split, metric, max_drop, rounds, seed, two_sided)
            if (model, split) in partial:  # only with --allow-partial: the table says why the row is weaker
                row = dataclasses.replace(row, verdict=f"{row.verdict} [{partial[(model, split)]}]")
            out.rows.append(row)
        if split not in run.scores.get(model, {}) or split not in base.scores.get(model, {}):
            side = "the baseline" if split not in base.scores.get(model, {}) else "the run"
            out.notes.append(f"{model}/{split}: {side} has no per-sample scores, so a plain tolerance decides")
    for model in dict.fromkeys(m for m, _ in pairs):
        rfp, bfp = run.models.get(model, {}).get("fingerprint"), base.models.get(model, {}).get("fingerprint")
        if rfp and bfp and rfp != bfp:
            out.notes.append(f"{model}: the model's configuration changed (model fingerprint {bfp} -> {rfp})")
    bsv, rsv = base.from_run.get("scoring_version"), run.from_run.get("scoring_version")
    if bsv and rsv and bsv != rsv:  # a baseline file cannot be rescored: its scores stay what they were
        out.notes.append(f"the baseline was scored under scoring version {bsv}, the run under {rsv}: "
                         "a change in scoring shows as a change in the numbers")
    gated = set(pairs)
    extra = [f"{m}/{s}" for m, s in run.pairs() if (m, s) not in gated and (models is None or m in models)
             and (splits is None or s in splits)]
    if extra:
        out.notes.append("not gated (no baseline): " + ", ".join(extra))
    if not any(r.gated for r in out.rows):  # a green gate that checked nothing would be a lie
        out.reasons.append("nothing gated: no baseline value for " + ", ".join(LABELS.get(m, m) for m in metrics)
                           + " in any chosen model x split")
    return out


def _md(text: Any) -> str:
    """Table-cell text: pipes would break the table, a tag would render as HTML; an arrow reads as typed."""
    return mdtext.cell(text)


def _num(v: float | None, signed: bool = False) -> str:
    if v is None or math.isnan(v):
        return "–"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def markdown(result: GateResult, run: Baseline, base: Baseline, metrics: Sequence[str], max_drop: float, rounds: int,
             two_sided: bool = False) -> str:
    names = ", ".join(LABELS.get(m, m) for m in metrics)
    suite = f"{run.suite.get('name')} v{run.suite.get('version')}, fingerprint `{run.suite.get('fingerprint')}`"
    origin = base.from_run.get("run_id")
    lines = []
    if result.reasons:
        lines += ["### harness gate: ⚠️ not comparable", "",
                  f"Run `{_md(run.where)}` vs baseline `{_md(base.where)}`:", ""]
        lines += [f"- {_md(r)}" for r in result.reasons]
        return "\n".join(lines) + "\n"
    failed = sum(r.failed for r in result.rows)
    head = f"❌ {failed} regression{'s' if failed != 1 else ''}" if failed else "✅ pass"
    lines += [f"### harness gate: {head} ({names}; max drop {max_drop:g} points)", "",
              f"Run `{_md(run.where)}` ({_md(suite)}) vs baseline `{_md(base.where)}`"
              + (f" (saved from run `{_md(origin)}`)" if origin else "") + ".", "",
              "| model | split | metric | baseline | run | Δ | 95% CI of Δ | n | verdict |",
              "| --- | --- | --- | ---: | ---: | ---: | --- | ---: | --- |"]
    for r in result.rows:
        ci = f"[{_num(r.ci[0], True)}, {_num(r.ci[1], True)}]" if r.ci else "–"
        lines.append(f"| {_md(r.model)} | {_md(r.split)} | {LABELS.get(r.metric, _md(r.metric))} | {_num(r.base)} | {_num(r.run)} | "
                     f"{_num(r.delta, True)} | {ci} | {r.n if r.n is not None else '–'} | {r.verdict} |")
    rule = (f"|Δ| > {max_drop:g} and the 95% interval of Δ excludes 0" if two_sided
            else f"Δ < −{max_drop:g} and the 95% interval of Δ lies below 0")
    lines += ["", f"Values in percent; Δ = run − baseline in points. A row fails when {rule} "
              f"(paired bootstrap over sample ids, {rounds} resamples, seed 0)."]
    if result.notes:
        lines += [""] + [f"- {_md(n)}" for n in result.notes]
    return "\n".join(lines) + "\n"


def plain(result: GateResult, run: Baseline, base: Baseline, metrics: Sequence[str], max_drop: float, rounds: int,
          two_sided: bool = False) -> str:
    """The same verdict as ``markdown`` for a terminal: aligned columns, nothing escaped."""
    if result.reasons:
        lines = ["harness gate: NOT COMPARABLE", f"run {run.where} vs baseline {base.where}:"]
        return "\n".join(lines + [f"  - {r}" for r in result.reasons]) + "\n"
    failed = sum(r.failed for r in result.rows)
    head = f"FAIL, {failed} regression{'s' if failed != 1 else ''}" if failed else "pass"
    names = ", ".join(LABELS.get(m, m) for m in metrics)
    origin = base.from_run.get("run_id")
    lines = [f"harness gate: {head} ({names}; max drop {max_drop:g} points)",
             f"run {run.where} (suite {run.suite.get('name')} v{run.suite.get('version')}, fingerprint "
             f"{run.suite.get('fingerprint')}) vs baseline {base.where}" + (f" (saved from run {origin})" if origin else ""), ""]
    table = [("model", "split", "metric", "baseline", "run", "delta", "95% CI of delta", "n", "verdict")]
    for r in result.rows:
        ci = f"[{_num(r.ci[0], True)}, {_num(r.ci[1], True)}]" if r.ci else "-"
        table.append((r.model, r.split, LABELS.get(r.metric, r.metric), _num(r.base), _num(r.run), _num(r.delta, True), ci,
                      str(r.n) if r.n is not None else "-", r.verdict))
    widths = [max(len(row[k]) for row in table) for k in range(len(table[0]) - 1)]
    for row in table:
        cells = [c.rjust(w) if 3 <= k <= 5 or k == 7 else c.ljust(w) for k, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    rule = (f"|delta| > {max_drop:g} and the 95% interval of delta excludes 0" if two_sided
            else f"delta < -{max_drop:g} and the 95% interval of delta lies below 0")
    lines += ["", f"Values in percent; delta = run - baseline in points. A row fails when {rule} "
              f"(paired bootstrap over sample ids, {rounds} resamples, seed 0)."]
    lines += [f"  - {n}" for n in result.notes]
    return "\n".join(lines).replace("–", "-") + "\n"
