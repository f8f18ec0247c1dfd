"""``harness leaderboard RUN... --out DIR``: a static site across runs (harness.publish.leaderboard)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import add_verify_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, nargs="+", help="run directories (with results.json); later runs win on the paper tables")
    parser.add_argument("--out", type=Path, required=True, help="site directory to write (serve it, or open index.html)")
    parser.add_argument("--aliases", type=Path, help="YAML mapping measured model names to published model names")
    parser.add_argument("--tables", type=Path, help="paper-table layout YAML (default: reports/leaderboard_tables.yaml)")
    parser.add_argument("--title", default="Leaderboard", help="site title")
    add_verify_option(parser)


def main(args: argparse.Namespace) -> int:
    from harness.publish.leaderboard import build_site
    from harness.records.reader import verify_option

    notes: list[str] = []
    index = build_site(args.runs, args.out, args.aliases, args.tables, args.title, verify_option(args.verify), notes)
    for note in notes:
        print(note)
    print(f"leaderboard: {index}")
    return 0
