"""Every model of a run is built and checked before any model predicts.

Without this, a run of several models finds the second model's missing replay file, bad
option or broken environment only after the first model has run (hours, on a real
benchmark). Here each model is constructed (its options accepted, its worker environment
found, the worker started and the adapter imported there) and its ``Adapter.check()`` run
(files its options name exist and parse), and every problem is reported at once, before
the run directory is touched. Weights are not loaded: models load one at a time, as they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.adapter import Adapter
from harness.errors import HarnessError
from harness.run.config import ModelSpec
from harness.run.remote import make_adapter


class PreflightError(HarnessError):
    """One or more models of a run cannot start; lists each with its reason."""


def prepare_adapters(models: Sequence[ModelSpec], out: Path, log_suffix: str | None = None,
                     fail_fast: bool = False) -> dict[str, Adapter]:
    """Construct and check every model; raise PreflightError listing every one that cannot start."""
    adapters: dict[str, Adapter] = {}
    problems: list[str] = []
    for spec in models:
        adapter = None
        try:
            adapter = make_adapter(spec, out, log_suffix)
            adapter.check()
        except Exception as exc:  # an adapter's constructor may raise anything for options it rejects
            if fail_fast:
                raise
            if adapter is not None:
                adapter.close()
            what = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
            problems.append(f"model {spec.name!r} ({spec.adapter}): {what}")
            continue
        adapters[spec.name] = adapter
    if problems:
        for adapter in adapters.values():
            adapter.close()
        raise PreflightError(f"{len(problems)} of {len(models)} models cannot start; no model has predicted anything:\n  "
                             + "\n  ".join(problems))
    return adapters
