"""``harness compare RUN_A [RUN_B]``: paired differences between models, per split and slice (harness.publish.compare)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.options import add_verify_option, csv_list
from harness.score.paired import DEFAULT_ROUNDS

DESCRIPTION = "Exit status: 0 printed; 2 runs not comparable (suite fingerprint or conventions differ) or bad input."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="one run directory, or two scored under the same suite")
    parser.add_argument("--models", help="comma-separated models (or <run>:<model> labels with two runs; default: all)")
    parser.add_argument("--splits", help="comma-separated splits (default: every split both models have)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"bootstrap resamples (default {DEFAULT_ROUNDS})")
    add_verify_option(parser)
    parser.add_argument("--no-slices", action="store_true", help="per split only (no samples needed)")
    parser.add_argument("--data-root", type=Path, help="where the datasets live, for the slices (default: the run's)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead of plain text")


def main(args: argparse.Namespace) -> int:
    from harness.publish.api import Run
    from harness.publish.compare import markdown, paired_differences, plain
    from harness.records.reader import verify_option

    # Each run read through the verifying reader: stale scoring, changed annotations, a results.json that is not what
    # its logs give, or a score breaking its invariants are refused (as report, gate and leaderboard do).
    runs = [Run(p, args.data_root) for p in args.runs]
    verify = verify_option(args.verify)
    if verify != "none":  # stored scores against their masks, before any difference is printed
        for run in runs:
            print(f"{run.path}: {run.stored.rederive(verify if isinstance(verify, int) else None)}", file=sys.stderr)
    c = paired_differences(runs, csv_list(args.models), csv_list(args.splits), rounds=args.rounds, with_slices=not args.no_slices)
    print(markdown(c) if args.markdown else plain(c), end="")
    return 0
