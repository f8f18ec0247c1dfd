"""``harness data check|layout|fetch``: a dataset on disk checked against a suite, the layout a suite expects,
or the suite's data downloaded from where it is published into that layout.

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
    get = sub.add_parser("fetch", help="download a suite's data into the layout it expects, verified, then check its counts; "
                                       "a rerun resumes and skips what is already verified")
    get.add_argument("suite", help="a built-in suite name or a suite YAML path")
    add_run_option(get, "data_root", help="where to write (the data root a run reads)")
    get.add_argument("--config", type=Path, help="a run config YAML whose data_root to use")
    get.add_argument("--splits", help="comma-separated splits (default: every split of the suite)")


def main(args: argparse.Namespace) -> int:
    return {"check": _check, "layout": _layout, "fetch": _fetch}[args.data_command](args)


def _check(args: argparse.Namespace) -> int:
    from harness.data import datacheck
    from harness.run.config import resolve_data_root

    root = resolve_data_root(args.data_root, args.config)
    return datacheck.run_check(args.suite, root, csv_list(args.splits), decode=not args.no_decode)


def _layout(args: argparse.Namespace) -> int:
    from harness.data import datacheck
    from harness.data.samples import make_source
    from harness.data.suites import load_suite
    from harness.run.config import resolve_data_root

    suite = load_suite(args.suite)
    root = resolve_data_root(args.data_root, args.config)
    print(datacheck.render_layout(suite, make_source(suite, root, own=True), root))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from harness.data.fetch import fetch_suite
    from harness.run.config import resolve_data_root

    return fetch_suite(args.suite, resolve_data_root(args.data_root, args.config), csv_list(args.splits))
