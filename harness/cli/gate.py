"""``harness gate RUN --baseline FILE_OR_RUN``: fail CI when a metric drops for real (harness.publish.gate).

Its usage errors exit 3 (``EXIT_INPUT_ERROR``), not argparse's 2, which means "not comparable" here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from harness.cli.options import add_verify_option, csv_list
from harness.publish.gate import DEFAULT_ROUNDS, EXIT_INCOMPARABLE, EXIT_INPUT_ERROR
from harness.records.reader import VERIFY_DEFAULT

DESCRIPTION = ("Exit codes: 0 pass, 1 significant drop beyond --max-drop, 2 not comparable (including unknown metric, model "
               "or split names, partial or failing runs without --allow-partial, nothing gated, and runs scored under another "
               "scoring version: run `harness rescore RUN`), 3 unreadable input "
               "or bad usage.")


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--max-failed", type=float, default=0.0,
                   help="largest share (0 to 1) of failed samples a comparable run may have (default 0)")
    p.add_argument("--allow-partial", action="store_true",
                   help="gate a partial or failing run anyway, on the samples it has; every such row says why")
    add_verify_option(p, help=f"score again from their masks N stored lines per model x split of each run before the verdict "
                              f"(default {VERIFY_DEFAULT}; 'all', or 'none'), refusing any that differs; needs the data")
    p.add_argument("--markdown", metavar="FILE",
                   help="write the Markdown table to FILE (e.g. $GITHUB_STEP_SUMMARY), or to stdout with '-'; "
                        "the terminal gets plain text")

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


def main(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.publish import baseline as baselines
    from harness.publish.gate import gate, markdown, plain
    from harness.records.invariants import UntrustedRunError
    from harness.records.reader import verify_option
    from harness.records.versions import ScoringVersionError

    metrics = csv_list(args.metric) or ["ciou"]
    try:
        if args.max_drop < 0:
            raise HarnessError(f"--max-drop must be >= 0, got {args.max_drop}")
        if not 0 <= args.max_failed <= 1:
            raise HarnessError(f"--max-failed is a share of the samples, from 0 to 1, got {args.max_failed}")
        verify = verify_option(args.verify)
        run = baselines.from_run(args.run_dir, verify)
        base = baselines.load(args.baseline, verify)
    except (ScoringVersionError, UntrustedRunError) as exc:  # readable, but not what its own files give: not comparable
        print(f"error: not comparable: {exc}", file=sys.stderr)
        return EXIT_INCOMPARABLE
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    result = gate(run, base, metrics, args.max_drop, csv_list(args.models), csv_list(args.splits), args.rounds,
                  two_sided=args.two_sided, max_failed=args.max_failed, allow_partial=args.allow_partial)
    for side in (run, base):  # what was re-derived from the masks, or why nothing was
        if side.from_run.get("verified"):
            result.notes.append(f"{side.where}: {side.from_run['verified']}")
    md = markdown(result, run, base, metrics, args.max_drop, args.rounds, args.two_sided)
    if args.markdown == "-":
        print(md, end="")
    else:
        print(plain(result, run, base, metrics, args.max_drop, args.rounds, args.two_sided), end="")
        if args.markdown is not None:
            target = Path(args.markdown)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(md, encoding="utf-8")
    if result.reasons:  # listed once, in the gate's output above; stderr only says that it failed
        n = len(result.reasons)
        print(f"error: not comparable ({n} reason{'s' if n != 1 else ''}, listed in the gate's output)", file=sys.stderr)
    return result.exit_code
