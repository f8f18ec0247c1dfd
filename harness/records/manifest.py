"""The run manifest: what was run, with what, where, and how far it got.

Resuming into a run directory is allowed only when what identifies the numbers is the
same: the suite fingerprint (data, splits, conventions) and each model's adapter
fingerprint. Anything else would mix two experiments in one directory.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import harness
from harness.data.suites import Suite
from harness.errors import HarnessError

MANIFEST_VERSION = 1
_VERSIONED = ("numpy", "pycocotools", "pillow", "jinja2", "matplotlib", "pandas", "torch", "transformers")


class RunConflictError(HarnessError):
    """The run directory holds results made under a different suite or model configuration."""


def fingerprint(obj: Any) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    out = {"harness": harness.__version__, "python": platform.python_version()}
    for name in _VERSIONED:
        if name in ("torch", "transformers") and name not in sys.modules:
            continue  # record model libraries only when a model actually used them
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """The harness checkout's commit (None for a wheel install or without git)."""
    root = Path(harness.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_manifest(run_id: str, suite: Suite, config: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id,
        "created": now(),
        "updated": now(),
        "suite": suite.summary(),
        "conventions": suite.conventions.to_dict(),
        "config": config,
        "argv": argv,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "splits": [],
        "models": {},
        "status": {},
    }


def holds_predictions(model_dir: Path) -> bool:
    """Whether a model's folder of a run holds any stored prediction (a non-empty log, shard logs included)."""
    return any(p.stat().st_size > 0 for p in model_dir.glob("*.jsonl")) if model_dir.is_dir() else False


def check_compatible(manifest: dict[str, Any], suite: Suite, models: dict[str, dict[str, Any]], where: Path) -> None:
    """Refuse to resume into a directory whose numbers came from something else."""
    old = manifest.get("suite", {}).get("fingerprint")
    if old != suite.fingerprint:
        raise RunConflictError(
            f"{where} holds a run of suite {manifest.get('suite', {}).get('name')!r} with fingerprint {old}, "
            f"not {suite.name!r} {suite.fingerprint} (data, splits or conventions changed); use another --out"
        )
    for name, entry in models.items():
        prev = manifest.get("models", {}).get(name)
        # A model that stored nothing (it could not start, or was stopped before its first sample)
        # has no numbers to mix with: the fixed command takes its place and runs it.
        if prev is not None and prev.get("fingerprint") != entry["fingerprint"] and holds_predictions(where / name):
            raise RunConflictError(
                f"{where}/{name} was produced with a different configuration of model {name!r} "
                f"({prev.get('config')} vs {entry['config']}); use another --out or remove {where / name}"
            )
