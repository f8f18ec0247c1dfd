"""``harness env create|list|remove``: the command-line face of harness.run.envs."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def _create(args: argparse.Namespace) -> int:
    from harness.run.envs import create_env, upstream_var

    rec = create_env(args.name, python=args.python, upstream=args.upstream, adapter_dir=args.adapter_dir, path=args.path,
                     installer=args.installer, system_site_packages=args.system_site_packages,
                     pip_args=shlex.split(args.pip_args or ""), force=args.force)
    print(f"environment {rec.name}: {rec.python}")
    print(f"adapters:    {', '.join(rec.adapters)} (`harness run --models {rec.adapters[0]}` now runs in it)")
    if rec.upstream:
        print(f"upstream:    {rec.upstream} (its workers get {upstream_var(rec.name)})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from harness.run.envs import load_envs, registry_path, status

    envs = load_envs()
    if not envs:
        print(f"no managed environments ({registry_path()})")
        return 0
    for rec in envs.values():
        upstream = f"  upstream {rec.upstream}" if rec.upstream else ""
        print(f"{rec.name:<12} {status(rec):<8} {', '.join(rec.adapters):<28} {rec.python}{upstream}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from harness.run.envs import remove_env

    rec = remove_env(args.name, keep_files=args.keep_files)
    print(f"removed environment {rec.name}" + ("" if args.keep_files else f" and {rec.path}"))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="env_command", required=True)

    create = sub.add_parser("create", help="build an adapter's environment from its pins and remember it")
    create.add_argument("name", help="the adapter distribution adapters/NAME (and the environment's name)")
    create.add_argument("--python", help="base interpreter for the environment (default: this one); e.g. python3.12")
    create.add_argument("--upstream", type=Path, help="a checkout of the upstream repository (code not on PyPI, e.g. LENS)")
    create.add_argument("--from", dest="adapter_dir", type=Path, help="the adapter distribution folder (default: adapters/NAME)")
    create.add_argument("--path", type=Path, help="where the environment goes (default: $HARNESS_HOME/envs/NAME)")
    create.add_argument("--installer", choices=("auto", "uv", "pip"), default="auto", help="default: uv when on PATH")
    create.add_argument("--system-site-packages", action="store_true",
                        help="let the environment see the base interpreter's packages (e.g. a container's CUDA torch)")
    create.add_argument("--pip-args", help="extra installer arguments, e.g. \"--extra-index-url https://download.pytorch.org/whl/cu126\"")
    create.add_argument("--force", action="store_true", help="rebuild an existing environment")

    sub.add_parser("list", help="managed environments: status (ok, stale pins, missing), adapters, interpreter")

    rm = sub.add_parser("remove", help="forget an environment and delete its directory")
    rm.add_argument("name")
    rm.add_argument("--keep-files", action="store_true", help="only forget it; keep the directory")


def main(args: argparse.Namespace) -> int:
    return {"create": _create, "list": _list, "remove": _remove}[args.env_command](args)
