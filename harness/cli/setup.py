"""``harness setup MODEL...``: upstream checkout, environment and weights of shipped models (harness.run.provision)."""

from __future__ import annotations

import argparse
import shlex

DESCRIPTION = """For each model (a folder of adapters/, or a model name one of them registers): clone its upstream
repository at the pinned revision into $HARNESS_HOME/upstream/ ($HARNESS_GIT_BASE replaces https://github.com), create
its environment with that checkout (`harness env create`), and download the weights its variant loads into the
Hugging Face cache (HF_HOME, HF_TOKEN, HF_ENDPOINT). What is already there is checked and kept: a second call does
nothing and says so."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="e.g. lens glamm lisa (or visionreasoner, sa2va-qwen2.5vl-7b)")
    parser.add_argument("--variant", help="the variant whose weights to download (default: the model's default variant)")
    parser.add_argument("--skip-env", action="store_true", help="no environment (checkout and weights only)")
    parser.add_argument("--skip-weights", action="store_true", help="no download (e.g. weights copied in by other means)")
    parser.add_argument("--python", help="base interpreter of the environments (default: the version the manifest asks for)")
    parser.add_argument("--installer", choices=("auto", "uv", "pip"), default="auto", help="default: uv when on PATH")
    parser.add_argument("--pip-args", help="extra installer arguments, e.g. \"--extra-index-url https://download.pytorch.org/whl/cu126\"")
    parser.add_argument("--system-site-packages", action="store_true",
                        help="let the environments see the base interpreter's packages (e.g. a container's CUDA torch)")


def main(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.run.manifests import select
    from harness.run.provision import DONE, SetupOptions, Step, human, setup_model

    if args.variant and len(args.models) > 1:
        raise HarnessError("--variant names one model's variant: set up one model at a time with it")
    manifests = [select(m, args.variant) for m in args.models]  # every name checked before anything is done
    options = SetupOptions(skip_env=args.skip_env, skip_weights=args.skip_weights, python=args.python, installer=args.installer,
                           pip_args=shlex.split(args.pip_args or ""), system_site_packages=args.system_site_packages)

    def report(step: Step) -> None:
        size = f" [{human(step.disk_bytes)} on disk]" if step.disk_bytes is not None else ""
        print(f"{step.model:<10} {step.name:<12} {step.outcome:<8} {step.detail}{size}", flush=True)

    changed = 0
    for manifest, variant in manifests:
        changed += sum(step.outcome == DONE for step in setup_model(manifest, variant, options, report))
    models = " ".join(m.dist for m, _ in manifests)
    print("nothing to do: everything was in place" if changed == 0 else f"set up: {models}")
    print(f"next: `harness doctor --device cuda {models}` checks the GPU path")
    return 0
