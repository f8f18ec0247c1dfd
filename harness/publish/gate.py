"""``harness gate RUN --baseline FILE_OR_RUN``: fail CI when a metric drops for real.

Exit codes (``EXIT_*`` below), stable for CI scripts:

- 0: no gated metric fell by more than ``--max-drop`` with significance;
- 1: at least one did: the drop (run minus baseline, in points) is below ``-max_drop`` *and*
  its paired-bootstrap 95% interval lies entirely below zero. Where the baseline has no
  per-sample scores (``--metrics-only`` baselines, a plain results.json) or the metric is not
  cIoU/gIoU, the drop alone decides (plain tolerance);
- 2: the two are not comparable: different suite fingerprint, different conventions,
  different sample ids, or a gated model x split missing from the run; every reason is listed;
- 3: the inputs cannot be read (missing run, malformed baseline) or the command line is wrong.

``--two-sided`` also fails a significant *rise* beyond the tolerance: for a deterministic
fixture model (shapes-reasoner in CI) any change is a change in scoring, up or down.

The paired bootstrap pairs samples by id and resamples ids with replacement (``--rounds``,
seed 0): each round computes the metric on the same resampled ids for the run and the
baseline and takes the difference. The interval printed is the official difference
(results.json values) plus the 2.5/97.5 percentiles of the bootstrap deviations, so a
change in aggregation with identical per-sample scores shows as a zero-width interval
around a real drop, and fails. Output is a Markdown table for a pull-request comment.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from harness.errors import HarnessError
from harness.publish import baseline as baselines
from harness.publish.baseline import Baseline, csv_list
from harness.score.paired import paired_spread

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_INCOMPARABLE = 2
EXIT_INPUT_ERROR = 3

BOOTSTRAPPED = ("ciou", "giou")
LABELS = {"ciou": "cIoU", "giou": "gIoU"}
DEFAULT_ROUNDS = 1000
_MAX_EXAMPLES = 3


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


def incomparable(run: Baseline, base: Baseline, pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Every reason the run cannot be gated against the baseline (empty: comparable)."""
    reasons = []
    rf, bf = run.suite.get("fingerprint"), base.suite.get("fingerprint")
    if rf != bf:
        reasons.append(
            f"suite fingerprint differs: run {run.suite.get('name')} v{run.suite.get('version')} {rf} vs baseline "
            f"{base.suite.get('name')} v{base.suite.get('version')} {bf} (data, splits or conventions changed; "
            "if intended, save a new baseline with `harness baseline save`)"
        )
    diff = sorted(k for k in set(run.conventions) | set(base.conventions) if run.conventions.get(k) != base.conventions.get(k))
    if diff:
        reasons.append("conventions differ: " + ", ".join(
            f"{k} run={run.conventions.get(k)!r} baseline={base.conventions.get(k)!r}" for k in diff))
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


def _row(run: Baseline, base: Baseline, model: str, split: str, metric: str, max_drop: float, rounds: int, seed: int,
         two_sided: bool = False) -> Row:
    b = _value(base.results[model][split].get(metric))
    r = _value(run.results[model][split].get(metric))
    n = run.results[model][split].get(f"n_{metric}", run.results[model][split].get("n"))
    if b is None:
        return Row(model, split, metric, b, r, None, None, n, False, "not gated (no baseline value)")
    if r is None:
        return Row(model, split, metric, b, r, None, None, n, True, "❌ FAIL: the run has no value")
    delta = r - b
    rs, bs = run.scores.get(model, {}).get(split), base.scores.get(model, {}).get(split)
    ci = None
    if metric in BOOTSTRAPPED and rs is not None and bs is not None:
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
         seed: int = 0, two_sided: bool = False) -> GateResult:
    """Compare a run (read as a Baseline) with a baseline; see the module docstring."""
    out = GateResult()
    chosen = base.select(models, splits)
    pairs = chosen.pairs()
    for m in models or []:
        if m not in base.results:
            out.reasons.append(f"model {m!r} is not in the baseline {base.where} (it has {', '.join(base.results) or 'none'})")
    for s in splits or []:
        if not any(s in by for by in chosen.results.values()):
            out.reasons.append(f"split {s!r} is not in the baseline {base.where}")
    if not pairs and not out.reasons:
        out.reasons.append(f"nothing to gate: the baseline {base.where} has no results for the chosen models and splits")
    out.reasons += incomparable(run, base, pairs)
    if out.reasons:
        return out
    for model, split in pairs:
        for metric in metrics:
            out.rows.append(_row(run, base, model, split, metric, max_drop, rounds, seed, two_sided))
        if split not in run.scores.get(model, {}) or split not in base.scores.get(model, {}):
            side = "the baseline" if split not in base.scores.get(model, {}) else "the run"
            out.notes.append(f"{model}/{split}: {side} has no per-sample scores, so a plain tolerance decides")
    for model in dict.fromkeys(m for m, _ in pairs):
        rfp, bfp = run.models.get(model, {}).get("fingerprint"), base.models.get(model, {}).get("fingerprint")
        if rfp and bfp and rfp != bfp:
            out.notes.append(f"{model}: the model's configuration changed (adapter fingerprint {bfp} -> {rfp})")
    gated = set(pairs)
    extra = [f"{m}/{s}" for m, s in run.pairs() if (m, s) not in gated and (models is None or m in models)
             and (splits is None or s in splits)]
    if extra:
        out.notes.append("not gated (no baseline): " + ", ".join(extra))
    return out


def _md(text: Any) -> str:
    """Table-cell text: pipes and angle brackets would break the table or render as HTML."""
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


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


def _cmd_gate(args: argparse.Namespace) -> int:
    metrics = csv_list(args.metric) or ["ciou"]
    try:
        if args.max_drop < 0:
            raise HarnessError(f"--max-drop must be >= 0, got {args.max_drop}")
        run = baselines.from_run(args.run_dir)
        base = baselines.load(args.baseline)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    result = gate(run, base, metrics, args.max_drop, csv_list(args.models), csv_list(args.splits), args.rounds, two_sided=args.two_sided)
    text = markdown(result, run, base, metrics, args.max_drop, args.rounds, args.two_sided)
    print(text, end="")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    if result.reasons:
        print("error: not comparable: " + "; ".join(result.reasons), file=sys.stderr)
    return result.exit_code


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gate", help="compare a run with a baseline; exit 1 on a significant drop, 2 when not comparable",
        description="Exit codes: 0 pass, 1 significant drop beyond --max-drop, 2 not comparable, 3 unreadable input or bad usage.",
    )
    p.add_argument("run_dir", type=Path, help="the run directory to check")
    p.add_argument("--baseline", type=Path, required=True,
                   help="a baseline file (harness baseline save), a results.json, or a run directory")
    p.add_argument("--metric", default="ciou",
                   help="comma-separated metrics of results.json (default ciou; ciou and giou get a paired bootstrap)")
    p.add_argument("--max-drop", type=float, default=0.5, help="allowed drop in points (percent), default 0.5")
    p.add_argument("--splits", help="comma-separated splits to gate (default: every split of the baseline)")
    p.add_argument("--models", help="comma-separated models to gate (default: every model of the baseline)")
    p.add_argument("--two-sided", action="store_true", help="also fail a significant rise beyond the tolerance (deterministic fixtures)")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"bootstrap resamples (default {DEFAULT_ROUNDS})")
    p.add_argument("--markdown", type=Path, help="also write the Markdown table to this file (e.g. $GITHUB_STEP_SUMMARY)")
    p.set_defaults(func=_cmd_gate)

    def usage_error(message: str) -> NoReturn:  # argparse would exit 2, which means "not comparable" here
        p.print_usage(sys.stderr)
        print(f"{p.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INPUT_ERROR)

    p.error = usage_error  # type: ignore[method-assign]
    parse_known = p.parse_known_args

    def strict_parse(args: Any = None, namespace: Any = None) -> Any:  # unknown options too (else the top parser exits 2)
        ns, extras = parse_known(args, namespace)
        if extras:
            usage_error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras

    p.parse_known_args = strict_parse  # type: ignore[method-assign,assignment]
