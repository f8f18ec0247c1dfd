"""``harness merge RUN``: the shard logs of a run merged (ids checked against the split), then results and report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-root", type=Path, help="where datasets live")
    parser.add_argument("--no-report", action="store_true")


def main(args: argparse.Namespace) -> int:
    from harness.cli.run import exit_status, print_outcome
    from harness.run.merge import merge_and_report

    outcome = merge_and_report(args.run_dir, data_root=args.data_root, render=not args.no_report)
    if outcome.pending:  # shards missing: nothing is finished, and that is not a success
        print(f"error: {outcome.run_dir}: cannot finish the merge, {outcome.pending}; "
              "run the missing shards (or `harness run` with the same options), then merge again", file=sys.stderr)
        return 2
    print_outcome(outcome)
    return exit_status(outcome)
