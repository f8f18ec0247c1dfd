"""What several commands parse alike: comma-separated lists, and the options of a run (declared on RunConfig)."""

from __future__ import annotations

import argparse
from typing import Any

from harness.run.config import RunOption, run_options


def csv_list(value: str | None) -> list[str] | None:
    """``a,b`` -> ["a", "b"]; None or empty -> None (meaning: all)."""
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    return items or None


def add_run_option(parser: argparse.ArgumentParser, name: str, **overrides: Any) -> None:
    """The flag of RunConfig's field ``name`` as its metadata declares it (``harness.run.config.RunOption``);
    ``overrides`` are add_argument's keywords that differ for this command (its help, ``required``)."""
    add_option(parser, name, dict(run_options())[name], **overrides)


def add_option(parser: argparse.ArgumentParser, name: str, option: RunOption, **overrides: Any) -> None:
    if option.flag is None:
        raise ValueError(f"RunConfig.{name} has no flag (it is set in the run config file only)")
    how: dict[str, Any] = {"action": "store_true"} if option.type is bool else {"type": option.type}
    parser.add_argument(option.flag, dest=name, **{**how, "help": option.help, **overrides})
