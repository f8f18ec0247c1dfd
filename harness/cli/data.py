"""``harness data check|layout``: a dataset on disk checked against a suite, or the layout a suite expects.

The data root may come from a run config file (harness.run.config.resolve_data_root), which the data stage
never reads itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import add_run_option, csv_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True)
    chk = sub.add_parser("check", help="check annotation files, images and official counts; exit 1 on problems")
    chk.add_argument("--suite", required=True, help="a built-in suite name or a suite YAML path")
    add_run_option(chk, "data_root")
    chk.add_argument("--config", type=Path, help="a run config YAML whose data_root to use")
    chk.add_argument("--splits", help="comma-separated splits (default: every split of the suite)")
    chk.add_argument("--no-decode", action="store_true", help="read image headers only (faster; misses truncated files)")
    lay = sub.add_parser("layout", help="print the directory tree a suite expects and where each file is published")
    lay.add_argument("suite", help="a built-in suite name or a suite YAML path")
    add_run_option(lay, "data_root", help="mark what is present under this data root")
    lay.add_argument("--config", type=Path, help="a run config YAML whose data_root to use")


def main(args: argparse.Namespace) -> int:
    return _check(args) if args.data_command == "check" else _layout(args)


def _check(args: argparse.Namespace) -> int:
    from harness.data import datacheck
    from harness.run.config import resolve_data_root

    root = resolve_data_root(args.data_root, args.config)
    return datacheck.run_check(args.suite, root, csv_list(args.splits), decode=not args.no_decode)


def _layout(args: argparse.Namespace) -> int:
    from harness.data import datacheck
    from harness.data.suites import load_suite
    from harness.run.config import resolve_data_root

    suite = load_suite(args.suite)
    root = resolve_data_root(args.data_root, args.config)
    print(datacheck.render_layout(suite, datacheck.make_source(suite, root), root))
    return 0
