"""``harness rescore RUN``: every stored score recomputed from its mask; the logs whose scores differ rewritten."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.run.rescore import RescoreOutcome

DESCRIPTION = ("Recomputes each log line's score from its stored mask with this harness's scoring code, rewrites the "
               "logs whose scores differ (listing each changed sample id on stderr), records the scoring version and "
               "writes results.json. `harness report --rescore RUN` does the same and renders the report.")
_MAX_LISTED = 20  # changed scores listed on stderr (a scoring fix may change thousands)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-root", type=Path, help="where datasets live (default: the run's)")


def main(args: argparse.Namespace) -> int:
    from harness.run.rescore import rescore_run

    print_rescore(rescore_run(args.run_dir, data_root=args.data_root, render=False))
    return 0


def print_rescore(res: RescoreOutcome) -> None:
    """The summary on stdout; every changed score (up to a limit) on stderr, with its sample id."""
    from harness.records.store import RunDir

    changed = res.changed
    head = f"rescored {res.n} samples in {len(res.logs)} log{'s' if len(res.logs) != 1 else ''} (scoring version {res.version}): "
    if not changed:
        print(head + "every stored score matches its mask")
    else:
        ids = ", ".join(c.id for c in changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        print(head + f"{len(changed)} stored score{'s' if len(changed) != 1 else ''} disagreed with the mask and "
              f"{'were' if len(changed) != 1 else 'was'} replaced: {ids}")
    for c in changed[:_MAX_LISTED]:
        print(f"score changed: {c.describe()}", file=sys.stderr)
    if len(changed) > _MAX_LISTED:
        print(f"score changed: ... and {len(changed) - _MAX_LISTED} more", file=sys.stderr)
    out = res.outcome
    if out.results_path is not None:
        print(f"results: {out.results_path}")
    if out.report_path is not None:
        print(f"report:  {out.report_path}")
    elif changed and RunDir(res.run_dir).report_path.exists():
        print(f"the report still shows the old scores: harness report {res.run_dir}")
