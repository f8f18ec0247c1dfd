"""``harness doctor [--device cuda|cpu] [MODEL...]``: one line per check, exit 1 when one failed (harness.run.doctor)."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Check this machine and the named models' environments before hours are spent on them: torch and the
device, the dtype each adapter uses, flash-attn or sdpa, free GPU memory against the model's need, NCCL, the weights in
the Hugging Face cache, the adapter's tiny-model tests on the device, the out-of-memory halving path, and a two-process
torchrun. One line per check: ok, warning, failed (with the fix) or skipped (with the reason). Exit 0 unless a check
failed. On CPU the GPU checks are skipped."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="e.g. lens glamm lisa (default: the engine's own checks)")
    parser.add_argument("--device", default="auto",
                        help="cuda, cuda:N or cpu (default: cuda when the first model's environment sees a GPU, else cpu)")
    parser.add_argument("--variant", help="the variant whose weights and memory to check (default: the model's default)")


def _auto_device(python: str | None) -> tuple[str, str]:
    """(the device, why) for --device auto: ask an interpreter with torch whether it sees CUDA."""
    from harness.run.doctor import probe

    if python is None:
        return "cpu", "no environment of a named model to ask and no torch in the engine's environment"
    facts = probe(python, "facts", "cuda")
    if facts.get("cuda_available"):
        return "cuda", f"{python} sees CUDA"
    reason = facts.get("error") or facts.get("torch_error") or "torch.cuda.is_available() is False"
    return "cpu", f"no CUDA device visible to {python} ({reason})"


def main(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.run import envs
    from harness.run.doctor import FAILED, Check, engine_checks, exit_status, model_checks, probe, torchrun_check
    from harness.run.manifests import select

    if args.variant and len(args.models) > 1:
        raise HarnessError("--variant names one model's variant: check one model at a time with it")
    manifests = [select(m, args.variant) for m in args.models]  # every name checked before anything is done

    checks: list[Check] = []

    def emit(check: Check) -> None:
        checks.append(check)
        print(check.line(), flush=True)

    for check in engine_checks():
        emit(check)
    registered = envs.load_envs()
    pythons = [registered[m.dist].python for m, _ in manifests if m.dist in registered]
    engine_torch = probe(sys.executable, "facts", "cpu").get("torch") is not None
    first_python = pythons[0] if pythons else (sys.executable if engine_torch else None)
    device, why = (args.device, "--device") if args.device != "auto" else _auto_device(first_python)
    print(f"device   {device} ({why})", flush=True)
    for manifest, variant in manifests:
        for check in model_checks(manifest, variant, device):
            emit(check)
    count = 0
    if device.startswith("cuda") and first_python is not None:
        count = int(probe(first_python, "facts", device).get("device_count") or 0)
    emit(torchrun_check(first_python, device, count))
    failed = sum(c.status == FAILED for c in checks)
    print(f"{failed} check(s) failed: fix them and run `harness doctor` again" if failed else "all required checks passed")
    return exit_status(checks)
