"""``harness run``: every option is a RunConfig field's (harness.run.config), plus ``--config`` and ``--no-report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.cli.options import add_run_option
from harness.run.config import run_options

DESCRIPTION = ("Every model is built and checked (options, files, environment) before any predicts. "
               "Exit status: 0 every sample predicted; 4 some sample failed or some model could not "
               "load (results and report are still written, the failures are listed on stderr); "
               "2 bad input, a model that cannot start included; 130 interrupted.")

# `harness run` exit status: 0 every sample predicted; EXIT_SAMPLES_FAILED when any sample failed or any
# model could not run (results and report are still written); 2 bad input (HarnessError); 130 interrupted.
EXIT_SAMPLES_FAILED = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, option in run_options():
        if option.flag is not None:
            add_run_option(parser, name)
        if name == "device":  # the command's own two options, where `harness run --help` has always listed them
            parser.add_argument("--config", type=Path, help="a run config YAML (per-model settings live here)")
            parser.add_argument("--no-report", action="store_true", help="write results.json but no HTML report")


def main(args: argparse.Namespace) -> int:
    from harness.run.config import build_config
    from harness.run.runner import run

    flags = {name: getattr(args, name) for name, option in run_options() if option.flag is not None}
    outcome = run(build_config(args.config, **flags), argv=sys.argv, render=not args.no_report)
    print_outcome(outcome)
    return exit_status(outcome)


def print_outcome(outcome: Any) -> None:
    if outcome.pending:
        print(f"this process is done; {outcome.pending}. The last shard to finish merges; or: harness merge {outcome.run_dir}")
    if outcome.results_path is not None:
        print(f"results: {outcome.results_path}")
    if outcome.report_path is not None:
        print(f"report:  {outcome.report_path}")


def exit_status(outcome: Any) -> int:
    """Print the run's table (stdout) and its failures (stderr); the exit status they imply."""
    from harness.records.reader import StoredRun
    from harness.records.store import read_json

    run = StoredRun(outcome.run_dir)
    manifest = run.manifest
    # Models that could not run (they failed to load; the others ran): in the manifest until a later command runs them.
    failures = [f"model {name!r} {entry['error']}" for name, entry in manifest.get("models", {}).items() if entry.get("error")]
    if outcome.results_path is None:  # shards still running: a rank whose model could not load is not a success
        for line in failures:
            print(f"failed: {line}", file=sys.stderr)
        return EXIT_SAMPLES_FAILED if failures else 0
    from harness.publish.summary import failed_samples, summary_table
    from harness.run.finish import missing_pairs

    doc = read_json(outcome.results_path)
    limit = manifest.get("config", {}).get("limit")
    print(summary_table(doc, limit), end="")
    # Samples asked for and not stored (a model that could not run, a run stopped midway): never a success.
    failures = failed_samples(run, doc) + failures
    failures += [f"missing: {line} (a `harness run` into {outcome.run_dir} asking for it predicts them)" for line in missing_pairs(doc)
                 if not any(line.startswith(f"{name}/") for name in manifest.get("models", {}) if manifest["models"][name].get("error"))]
    for line in failures:
        print(f"failed: {line}", file=sys.stderr)
    return EXIT_SAMPLES_FAILED if failures else 0
