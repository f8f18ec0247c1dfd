"""``harness baseline save RUN --to FILE``: a run's metrics and per-sample scores as a small file to commit."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import csv_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="baseline_command", required=True)
    save = sub.add_parser("save", help="write a baseline file from a run directory")
    save.add_argument("run_dir", type=Path, help="a run directory (with results.json and its logs)")
    save.add_argument("--to", type=Path, required=True, help="the baseline file to write (JSON)")
    save.add_argument("--models", help="comma-separated models to keep (default: all)")
    save.add_argument("--splits", help="comma-separated splits to keep (default: all)")
    save.add_argument("--metrics-only", action="store_true",
                      help="leave out the per-sample scores (the gate then uses a plain tolerance)")


def main(args: argparse.Namespace) -> int:
    from harness.publish.baseline import save

    base = save(args.run_dir, args.to, csv_list(args.models), csv_list(args.splits), with_scores=not args.metrics_only)
    pairs = ", ".join(f"{m}/{s}" for m, s in base.pairs())
    print(f"baseline: {args.to} ({args.to.stat().st_size / 1024:.1f} KB; {pairs})")
    return 0
