"""``harness list``: the registered models and the built-in suites (imports no model code).

Named ``listing``, not ``list``: importing ``harness.cli.list`` would bind ``list`` in the package's namespace.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def main(args: argparse.Namespace) -> int:
    from harness.data.suites import builtin_suites, load_suite
    from harness.registry import all_adapters

    print("models:")
    for name, entry in sorted(all_adapters().items()):
        origin = "" if entry.origin == "builtin" else f"  [{entry.origin}]"
        print(f"  {name:<18} {entry.summary or entry.target}{origin}")
    print("suites:")
    for name, path in builtin_suites().items():
        suite = load_suite(str(path))
        print(f"  {name:<18} v{suite.version}  splits: {', '.join(suite.splits)}")
    return 0
