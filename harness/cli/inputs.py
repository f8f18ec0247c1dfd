"""``harness inputs``: hashes of what each model is shown per sample; ``--diff A B`` lists what changed (harness.run.inputs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import add_run_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_option(parser, "models", help="comma-separated models (as for harness run)")
    add_run_option(parser, "suite")
    add_run_option(parser, "splits")
    add_run_option(parser, "limit", help="at most N samples per split")
    add_run_option(parser, "data_root")
    parser.add_argument("--config", type=Path, help="a run config YAML (per-model options)")
    parser.add_argument("--out", type=Path, help="the JSON Lines file to write")
    parser.add_argument("--diff", nargs=2, metavar=("A", "B"), help="compare two inputs files; exit 1 when they differ")
    parser.add_argument("--max-lines", type=int, default=200, help="with --diff: list at most N ids (default 200)")


def main(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.run.inputs import collect, diff, write

    if args.diff:
        report, differs = diff(Path(args.diff[0]), Path(args.diff[1]), args.max_lines)
        print("\n".join(report))
        return 1 if differs else 0
    if args.out is None:
        raise HarnessError("harness inputs needs --out FILE (or --diff A B)")
    header, lines = collect(args.models, args.suite, args.splits, args.limit, args.data_root, args.config)
    write(args.out, header, lines)
    print(f"inputs: {args.out} ({len(lines)} model x sample lines)")
    return 0
