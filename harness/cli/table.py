"""``harness table RUN... --layout lens-table1|lens-table3|FILE``: a paper table (harness.publish.table)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.options import add_verify_option
from harness.publish.table import FORMATS, LAYOUTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run directories (with results.json); later runs win a cell")
    parser.add_argument("--layout", required=True, help=f"{' or '.join(LAYOUTS)}, or a layout YAML (the format of "
                                                        "reports/leaderboard_tables.yaml)")
    parser.add_argument("--table", help="the id of one table of the layout file (default: all)")
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="output format (default markdown)")
    parser.add_argument("--intervals", action="store_true", help="show each measured value's bootstrap 95%% interval")
    parser.add_argument("--decimals", type=int, default=1, help="decimals shown (default 1; CSV is never rounded)")
    parser.add_argument("--aliases", type=Path, help="YAML mapping measured model names to published model names")
    parser.add_argument("--standalone", action="store_true", help="LaTeX: a whole document (article + booktabs) that compiles as it is")
    parser.add_argument("--out", type=Path, help="write to this file (default: stdout)")
    add_verify_option(parser)


def main(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.files import write_text_atomic
    from harness.publish.table import render
    from harness.records.reader import verify_option

    if args.decimals < 0 or args.decimals > 6:
        raise HarnessError(f"--decimals must be from 0 to 6, got {args.decimals}")
    notes: list[str] = []
    text = render(args.runs, args.layout, args.format, args.intervals, args.decimals, args.table, args.aliases, args.standalone,
                  verify_option(args.verify), notes)
    for note in notes:  # stderr: stdout is the table itself
        print(note, file=sys.stderr)
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(args.out, text)
        print(f"table: {args.out}")
    return 0
