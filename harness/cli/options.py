"""What several commands parse alike: comma-separated lists, and the options of a run (declared on RunConfig)."""

from __future__ import annotations

import argparse
from typing import Any

from harness.run.config import run_options


def csv_list(value: str | None) -> list[str] | None:
    """``a,b`` -> ["a", "b"]; None or empty -> None (meaning: all)."""
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    return items or None


def add_verify_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--verify N|all|none``: how many stored scores per model x split a command re-derives from their masks
    before it prints a number (harness.records.reader.verify_option reads it)."""
    from harness.records.reader import VERIFY_DEFAULT  # numpy: not for `harness run --help`, which imports this module

    help = help or (f"score again from their masks N stored lines per model x split of each run first (default {VERIFY_DEFAULT}; "
                    "'all', or 'none'), refusing a run where any differs; needs the data")
    parser.add_argument("--verify", default=str(VERIFY_DEFAULT), metavar="N|all|none", help=help)


def add_run_option(parser: argparse.ArgumentParser, name: str, **overrides: Any) -> None:
    """The flag of RunConfig's field ``name`` as its metadata declares it (``harness.run.config.RunOption``);
    ``overrides`` are add_argument's keywords that differ for this command (its help, ``required``)."""
    option = dict(run_options())[name]
    if option.flag is None:
        raise ValueError(f"RunConfig.{name} has no flag (it is set in the run config file only)")
    how: dict[str, Any] = {"action": "store_true"} if option.type is bool else {"type": option.type}
    parser.add_argument(option.flag, dest=name, **{**how, "help": option.help, **overrides})
