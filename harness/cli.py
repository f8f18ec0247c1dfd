"""The ``harness`` command: run, list, report.

Imports are deferred to the subcommand that needs them, so ``harness list`` stays quick and
never imports torch or any model code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Further subcommands live beside the code they drive; each module has
# ``add_parser(subparsers)`` that registers its parser with ``set_defaults(func=...)``.
# Those modules import numpy and friends, so the top-level parser knows them only by name and
# one-line help (what `harness --help` prints); a module is imported when its command is chosen.
# tests/test_cli_startup.py checks each help line against the module's own parser.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "gate": ("harness.publish.gate", "compare a run with a baseline; exit 1 on a significant drop, 2 when not comparable"),
    "baseline": ("harness.publish.baseline", "save a run's metrics and per-sample scores as a small baseline file to commit"),
    "leaderboard": ("harness.publish.leaderboard", "build a static leaderboard site from run directories"),
    "inputs": ("harness.publish.inputs", "hash what each model is shown per sample; --diff A B lists what changed"),
    "compare": ("harness.publish.compare", "paired differences of cIoU and gIoU between models, per split and slice, with p-values"),
    "table": ("harness.publish.table", "write a paper table (LENS Table 1/3 or a layout file) as Markdown, LaTeX or CSV"),
    "env": ("harness.run.env_cli", "create, list and remove the models' own Python environments"),
    "rescore": ("harness.run.rescore",
                "recompute every stored score from its mask and the ground truth; rewrite the logs and results.json"),
}
COMMAND_MODULES: tuple[str, ...] = tuple(module for module, _ in LAZY_COMMANDS.values())


def _chosen_command(argv: Sequence[str] | None) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option); the top parser has no other options."""
    return next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.run.config import build_config
    from harness.run.runner import run

    config = build_config(
        config_file=args.config, models=args.models, suite=args.suite, splits=args.splits, out=args.out,
        data_root=args.data_root, limit=args.limit, batch_size=args.batch_size, device=args.device,
        shard=args.shard, timeout=args.timeout, fail_fast=args.fail_fast, retry_failed=args.retry_failed,
    )
    outcome = run(config, argv=sys.argv, render=not args.no_report)
    _print_outcome(outcome)
    return _ending(outcome)


# Stored lines re-derived per model x split by report, gate and leaderboard (harness.records.reader.VERIFY_DEFAULT;
# a literal here, so that `harness --help` imports nothing).
VERIFY_LINES = 256

# `harness run` exit status: 0 every sample predicted; EXIT_SAMPLES_FAILED when any sample failed or any
# model could not run (results and report are still written); 2 bad input (HarnessError); 130 interrupted.
EXIT_SAMPLES_FAILED = 4


def _ending(outcome: Any) -> int:
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


def _print_outcome(outcome: Any) -> None:
    if outcome.pending:
        print(f"this process is done; {outcome.pending}. The last shard to finish merges; or: harness merge {outcome.run_dir}")
    if outcome.results_path is not None:
        print(f"results: {outcome.results_path}")
    if outcome.report_path is not None:
        print(f"report:  {outcome.report_path}")


def _cmd_merge(args: argparse.Namespace) -> int:
    from harness.run.merge import merge_and_report

    outcome = merge_and_report(args.run_dir, data_root=args.data_root, render=not args.no_report)
    if outcome.pending:  # shards missing: nothing is finished, and that is not a success
        print(f"error: {outcome.run_dir}: cannot finish the merge, {outcome.pending}; "
              "run the missing shards (or `harness run` with the same options), then merge again", file=sys.stderr)
        return 2
    _print_outcome(outcome)
    return _ending(outcome)


def _cmd_list(args: argparse.Namespace) -> int:
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


def _cmd_report(args: argparse.Namespace) -> int:
    if args.rescore:
        from harness.run.rescore import print_rescore, rescore_run

        print_rescore(rescore_run(args.run_dir, data_root=args.data_root, render=True))
        return 0
    from harness.records.reader import verify_option
    from harness.run.finish import report_run

    path, note = report_run(args.run_dir, data_root=args.data_root, verify=verify_option(args.verify))
    print(note)
    print(f"report:  {path}")
    return 0


# `harness data check|layout` (harness.data.datacheck); wired here because the data root may come
# from a run config, and the data stage never imports the run stage.
def resolve_data_root(flag: Path | None, config: Path | None) -> Path | None:
    if flag is not None:
        return flag.expanduser()
    if config is not None:
        from harness.run.config import load_config_file

        value = load_config_file(config).get("data_root")
        if value:
            return Path(str(value)).expanduser()
    env = os.environ.get("HARNESS_DATA")
    return Path(env).expanduser() if env else None


def _cmd_data_check(args: argparse.Namespace) -> int:
    from harness.data import datacheck

    root = resolve_data_root(args.data_root, args.config)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None
    return datacheck.run_check(args.suite, root, splits, decode=not args.no_decode)


def _cmd_data_layout(args: argparse.Namespace) -> int:
    from harness.data import datacheck
    from harness.data.suites import load_suite

    suite = load_suite(args.suite)
    root = resolve_data_root(args.data_root, args.config)
    print(datacheck.render_layout(suite, datacheck.make_source(suite, root), root))
    return 0


def _add_data_parser(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="check a dataset on disk against a suite, or show the layout it expects")
    sub = data.add_subparsers(dest="data_command", required=True)
    chk = sub.add_parser("check", help="check annotation files, images and official counts; exit 1 on problems")
    chk.add_argument("--suite", required=True, help="a built-in suite name or a suite YAML path")
    chk.add_argument("--data-root", type=Path, help="where datasets live (default: config file, then $HARNESS_DATA)")
    chk.add_argument("--config", type=Path, help="a run config YAML whose data_root to use")
    chk.add_argument("--splits", help="comma-separated splits (default: every split of the suite)")
    chk.add_argument("--no-decode", action="store_true", help="read image headers only (faster; misses truncated files)")
    chk.set_defaults(func=_cmd_data_check)
    lay = sub.add_parser("layout", help="print the directory tree a suite expects and where each file is published")
    lay.add_argument("suite", help="a built-in suite name or a suite YAML path")
    lay.add_argument("--data-root", type=Path, help="mark what is present under this data root")
    lay.add_argument("--config", type=Path, help="a run config YAML whose data_root to use")
    lay.set_defaults(func=_cmd_data_layout)


def build_parser(argv: Sequence[str] | None = None, *, full: bool = True) -> argparse.ArgumentParser:
    """The ``harness`` parser. With ``full=False`` only the subcommand chosen in ``argv`` gets its real parser
    (and its module imported); the other lazy commands are names with their help line, enough for ``--help``."""
    chosen = None if full else _chosen_command(argv)
    from harness import __version__

    parser = argparse.ArgumentParser(prog="harness", description="Evaluate text-prompted segmentation models under one set of rules.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run models over a suite, score them, write results and a report",
                         description="Every model is built and checked (options, files, environment) before any predicts. "
                                     "Exit status: 0 every sample predicted; 4 some sample failed or some model could not "
                                     "load (results and report are still written, the failures are listed on stderr); "
                                     "2 bad input, a model that cannot start included; 130 interrupted.")
    run.add_argument("--models", help="comma-separated model names (registered adapters, names from --config, or replay:PATH)")
    run.add_argument("--suite", help="a built-in suite name or a suite YAML path (default: shapes)")
    run.add_argument("--splits", help="comma-separated splits (default: the suite's default splits)")
    run.add_argument("--out", type=Path, help="run directory; the same --out resumes (default: runs/<suite>)")
    run.add_argument("--data-root", type=Path, help="where datasets live (default: config file, then $HARNESS_DATA)")
    run.add_argument("--limit", type=int, help="at most N samples per split (a quick look, not a result)")
    run.add_argument("--batch-size", type=int, help="samples per adapter call; several images only for a multi-image adapter (default 8)")
    run.add_argument("--device", help="device for the models, e.g. cuda or cpu (default cpu)")
    run.add_argument("--config", type=Path, help="a run config YAML (per-model settings live here)")
    run.add_argument("--no-report", action="store_true", help="write results.json but no HTML report")
    run.add_argument("--shard", help="i/N: run only the i-th of N exact, disjoint slices (0-based; torchrun sets it from RANK)")
    run.add_argument("--timeout", type=float, help="seconds allowed per sample; a slower sample is recorded as failed")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed sample with its traceback (debugging)")
    run.add_argument("--retry-failed", action="store_true",
                     help="on resume, predict again the samples recorded as failed (new lines supersede the failed ones)")
    run.set_defaults(func=_cmd_run)

    mrg = sub.add_parser("merge", help="merge the shard logs of a run (checks ids against the split), then write results and report")
    mrg.add_argument("run_dir", type=Path)
    mrg.add_argument("--data-root", type=Path, help="where datasets live")
    mrg.add_argument("--no-report", action="store_true")
    mrg.set_defaults(func=_cmd_merge)

    lst = sub.add_parser("list", help="list models and suites (imports no model code)")
    lst.set_defaults(func=_cmd_list)

    rep = sub.add_parser("report", help="recompute results.json from a run's logs and render its HTML report",
                         description="Refused (exit 2) for logs scored under another scoring version than this harness's: "
                                     "`harness rescore RUN` (or --rescore) recomputes their scores from the stored masks.")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--data-root", type=Path, help="where datasets live, for the gallery's images")
    rep.add_argument("--rescore", action="store_true",
                     help="first recompute every stored score from its mask (as `harness rescore`), listing the ones that change")
    rep.add_argument("--verify", default=str(VERIFY_LINES), metavar="N|all|none",
                     help=f"score again from their masks N stored lines per model x split before reporting (default {VERIFY_LINES}), "
                          "refusing any that differs; needs the data")
    rep.set_defaults(func=_cmd_report)

    for name, (module, help_line) in LAZY_COMMANDS.items():
        if full or name == chosen:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_line)
    _add_data_parser(sub)
    return parser


def os_error_line(exc: OSError) -> str:
    """``error: PATH: No space left on device (errno ENOSPC); ...``: what failed, where, and that a rerun resumes."""
    import errno

    code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else "unknown"
    where = f"{exc.filename}: " if exc.filename is not None else ""
    line = f"error: {where}{exc.strerror or exc} (errno {code})"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM):
        line += "; what was written before is kept: free space or fix the permissions, then run the same command again"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    from harness.errors import HarnessError

    parser = build_parser(argv, full=False)
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted: finished samples are kept; run the same command to resume", file=sys.stderr)
        return 130
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `harness list | head`: the reader went away; silence the flush at exit, not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk, a read-only or unwritable output directory: one line, nothing lost
        print(os_error_line(exc), file=sys.stderr)
        return 2
    except BaseException as exc:
        if type(exc).__name__ != "WorkerAbort":  # harness.run.remote; not imported here to keep `list` light
            raise
        print(f"error: {exc}\nfinished samples are kept; fix the model environment and run the same command to resume",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
