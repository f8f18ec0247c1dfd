"""The ``harness`` command: one module per subcommand, imported only when its command is chosen.

Each command module has ``add_arguments(parser)`` (its options; ``DESCRIPTION``, when it has one, is
its parser's description) and ``main(args) -> int`` (the exit status), which calls library code.
The top-level parser knows the commands by name and one-line help (``LAZY_COMMANDS``, what
``harness --help`` prints), so ``harness --help`` and ``harness list`` stay quick and never import
numpy, torch or any model code. A command module's top imports only what its parser needs; the rest
is imported inside ``main``.

The command line sits above every other room (tests/test_layering.py): it may import any of them,
and nothing imports it but ``harness.__main__``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# name -> (module, one-line help), in the order `harness --help` lists them.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("harness.cli.run", "run models over a suite, score them, write results and a report"),
    "merge": ("harness.cli.merge", "merge the shard logs of a run (checks ids against the split), then write results and report"),
    "list": ("harness.cli.listing", "list models and suites (imports no model code)"),
    "report": ("harness.cli.report", "recompute results.json from a run's logs and render its HTML report"),
    "gate": ("harness.cli.gate", "compare a run with a baseline; exit 1 on a significant drop, 2 when not comparable"),
    "baseline": ("harness.cli.baseline", "save a run's metrics and per-sample scores as a small baseline file to commit"),
    "leaderboard": ("harness.cli.leaderboard", "build a static leaderboard site from run directories"),
    "inputs": ("harness.cli.inputs", "hash what each model is shown per sample; --diff A B lists what changed"),
    "compare": ("harness.cli.compare", "paired differences of cIoU and gIoU between models, per split and slice, with p-values"),
    "table": ("harness.cli.table", "write a paper table (LENS Table 1/3 or a layout file) as Markdown, LaTeX or CSV"),
    "env": ("harness.cli.env", "create, list and remove the models' own Python environments"),
    "rescore": ("harness.cli.rescore",
                "recompute every stored score from its mask and the ground truth; rewrite the logs and results.json"),
    "data": ("harness.cli.data", "fetch a suite's data from where it is published, check it on disk, or show the layout it expects"),
    "setup": ("harness.cli.setup", "clone a model's upstream code at its pinned revision, create its environment, download its weights"),
    "doctor": ("harness.cli.doctor", "check a machine and the models' environments: device, dtype, attention, memory, weights, tests"),
}


def _chosen_command(argv: Sequence[str] | None) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option); the top parser has no other options."""
    return next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None, *, full: bool = True) -> argparse.ArgumentParser:
    """The ``harness`` parser. With ``full=False`` only the subcommand chosen in ``argv`` gets its real parser
    (and its module imported); the others are names with their help line, enough for ``--help``."""
    chosen = None if full else _chosen_command(argv)
    from harness import __version__

    parser = argparse.ArgumentParser(prog="harness", description="Evaluate text-prompted segmentation models under one set of rules.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command")
    for name, (module_name, help_line) in LAZY_COMMANDS.items():
        if not (full or name == chosen):
            sub.add_parser(name, help=help_line)
            continue
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_line, description=getattr(module, "DESCRIPTION", None))
        module.add_arguments(command)
        command.set_defaults(func=module.main)
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
