"""``harness report RUN``: results.json recomputed from the run's logs, and its HTML report rendered."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.options import add_run_option, add_verify_option
from harness.records.reader import VERIFY_DEFAULT

DESCRIPTION = ("Refused (exit 2) for logs scored under another scoring version than this harness's: "
               "`harness rescore RUN` (or --rescore) recomputes their scores from the stored masks.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-root", type=Path, help="where datasets live, for the gallery's images")
    parser.add_argument("--rescore", action="store_true",
                        help="first recompute every stored score from its mask (as `harness rescore`), listing the ones that change")
    add_run_option(parser, "focus", help="the headline compares this model with each other one (recorded in the run's manifest, "
                                         "as `harness run --focus` does; `--focus ''` goes back to naming the best)")
    add_verify_option(parser, help=f"score again from their masks N stored lines per model x split before reporting "
                                   f"(default {VERIFY_DEFAULT}), refusing any that differs; needs the data")


def main(args: argparse.Namespace) -> int:
    if args.rescore:
        from harness.cli.rescore import print_rescore
        from harness.run.rescore import rescore_run

        print_rescore(rescore_run(args.run_dir, data_root=args.data_root, render=True))
        return 0
    from harness.records.reader import verify_option
    from harness.run.finish import report_run

    path, note, missing = report_run(args.run_dir, data_root=args.data_root, verify=verify_option(args.verify), focus=args.focus)
    print(note)
    print(f"report:  {path}")
    # A report of a run stopped midway renders what is stored; it says so, and how to finish the run.
    for line in missing:
        print(f"incomplete: {line} (a `harness run` into {args.run_dir} with the same options predicts the rest)", file=sys.stderr)
    return 0
