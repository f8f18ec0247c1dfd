"""Managed model environments: ``harness env create NAME`` and the registry that remembers them.

An adapter distribution is a folder ``adapters/<name>/`` with a ``pyproject.toml`` (the
distribution ``harness-<name>``, its entry points in ``harness.adapters``) and optionally a
``requirements.txt`` of exact pins, torch included (with its ``--extra-index-url`` line for a
CUDA build). ``create_env`` makes a virtualenv (with uv when present), installs the engine
(editable from this checkout, else the same version from the index), the pins and the
adapter in one resolver pass, asks the new environment which adapters it provides, and
records it in ``$HARNESS_HOME/envs.json``. From then on ``--models <adapter>`` runs in it.

Upstream code that is not on PyPI (LENS) is never copied here: ``--upstream PATH`` records a
checkout, and its worker gets ``HARNESS_<NAME>_REPO=PATH`` (a variable already set in the
shell wins, so one can point at another checkout for an experiment).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import harness
from harness.errors import HarnessError

REGISTRY_VERSION = 1
LOCAL = "local"  # ``env: local`` in a run config: run in-process even if a managed env provides the adapter
ENGINE_DIST = "harness-seg"


class EnvError(HarnessError):
    """An environment that cannot be created, found or used."""


@dataclass(frozen=True)
class EnvRecord:
    """One managed environment as remembered in envs.json."""

    name: str
    python: str  # the environment's interpreter (a venv's bin/python, never resolved)
    path: str
    adapters: list[str]  # the adapter names its distribution registers
    created: str
    pins_hash: str  # of the adapter's pyproject.toml + requirements.txt at creation
    adapter_dir: str
    engine: str  # the checkout installed editable, or "harness-seg==<version>"
    installer: str
    upstream: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def harness_home() -> Path:
    """Where managed environments and their registry live: $HARNESS_HOME, $HARNESS_CACHE, ~/.cache/harness."""
    base = os.environ.get("HARNESS_HOME") or os.environ.get("HARNESS_CACHE") or str(Path.home() / ".cache" / "harness")
    return Path(base).expanduser()


def registry_path() -> Path:
    return harness_home() / "envs.json"


def load_envs() -> dict[str, EnvRecord]:
    path = registry_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: EnvRecord(**{**rec, "name": name}) for name, rec in data.get("envs", {}).items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise EnvError(f"{path} is damaged ({exc}); fix or delete it, then recreate the environments") from exc


def _save_envs(envs: dict[str, EnvRecord]) -> None:
    from harness.files import write_json_atomic

    body = {name: {k: v for k, v in asdict(rec).items() if k != "name"} for name, rec in sorted(envs.items())}
    write_json_atomic(registry_path(), {"version": REGISTRY_VERSION, "envs": body})


def get_env(name: str) -> EnvRecord:
    """The environment called ``name`` (``env:`` in a run config); a did-you-mean error if unknown."""
    envs = load_envs()
    if name not in envs:
        from harness.registry import did_you_mean

        if not envs:
            raise EnvError(f"no managed environment {name!r} (none exist; make one with `harness env create {name}`)")
        raise EnvError(str(did_you_mean("environment", name, list(envs))))
    return envs[name]


def env_for_adapter(adapter: str) -> EnvRecord | None:
    """The managed environment providing ``adapter``, if exactly one does."""
    found = [rec for rec in load_envs().values() if adapter in rec.adapters]
    if len(found) > 1:
        names = ", ".join(sorted(r.name for r in found))
        raise EnvError(f"adapter {adapter!r} is provided by the environments {names}: name one with `env:` in the run config")
    return found[0] if found else None


def upstream_var(env_name: str) -> str:
    """``lens`` -> ``HARNESS_LENS_REPO``: where the adapter finds its upstream checkout."""
    return f"HARNESS_{re.sub(r'[^A-Za-z0-9]', '_', env_name).upper()}_REPO"


def worker_env_vars(rec: EnvRecord) -> dict[str, str]:
    """Variables a worker in this environment gets; the shell's own values win."""
    var = upstream_var(rec.name)
    return {var: rec.upstream} if rec.upstream and var not in os.environ else {}


def engine_root() -> Path | None:
    """This engine's checkout (with pyproject.toml), or None for a wheel install."""
    root = Path(harness.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.exists() and f'name = "{ENGINE_DIST}"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def pins_hash(adapter_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "requirements.txt"):
        path = adapter_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"") + b"\0")
    return digest.hexdigest()[:16]


def env_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def plan(path: Path, python: str, adapter_dir: Path, engine: Path | str, installer: str,
         system_site_packages: bool = False, pip_args: Sequence[str] = ()) -> list[list[str]]:
    """The commands that build the environment (pure, so the plan is testable without installing).

    Engine, pins and adapter go to one install command so the resolver sees every
    constraint at once (an adapter pin that conflicts with the engine fails here, loudly).
    ``engine`` is a checkout (a Path, installed editable) or a requirement string.
    """
    engine_req = ["-e", str(engine)] if isinstance(engine, Path) else [engine]
    reqs = adapter_dir / "requirements.txt"
    packages = [*engine_req, *(["-r", str(reqs)] if reqs.exists() else []), "-e", str(adapter_dir)]
    ssp = ["--system-site-packages"] if system_site_packages else []
    py = str(env_python(path))
    if installer == "uv":
        uv = shutil.which("uv") or "uv"
        return [[uv, "venv", "--python", python, *ssp, str(path)], [uv, "pip", "install", "--python", py, *pip_args, *packages]]
    return [[python, "-m", "venv", *ssp, str(path)], [py, "-m", "pip", "install", *pip_args, *packages]]


def _run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    # The installer's chatter goes to stderr: stdout stays for what the command reports.
    res = subprocess.run(cmd, stdout=2, check=False)
    if res.returncode != 0:
        raise EnvError(f"command failed (exit code {res.returncode}): {' '.join(cmd)}")


def probe(python: Path) -> dict[str, Any]:
    """Ask an environment which adapters it registers (imports no model code)."""
    res = subprocess.run([str(python), "-m", "harness.run.worker", "--list"], capture_output=True, text=True, timeout=300, check=False)
    if res.returncode != 0:
        raise EnvError(f"{python} -m harness.run.worker --list failed: {res.stderr.strip()[-2000:]}")
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def create_env(name: str, python: str | None = None, upstream: Path | None = None, adapter_dir: Path | None = None,
               path: Path | None = None, installer: str = "auto", system_site_packages: bool = False,
               pip_args: Sequence[str] = (), force: bool = False, run: Callable[[list[str]], None] = _run) -> EnvRecord:
    """Build, check and register the environment ``name`` for the adapter distribution in ``adapter_dir``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name == LOCAL:
        raise EnvError(f"environment name {name!r}: use letters, digits, '.', '_' or '-' (and not {LOCAL!r})")
    root = engine_root()
    if adapter_dir is None:
        if root is None:
            raise EnvError("this harness is not a checkout: say where the adapter distribution is with --from DIR")
        adapter_dir = root / "adapters" / name
    adapter_dir = adapter_dir.resolve()
    if not (adapter_dir / "pyproject.toml").exists():
        raise EnvError(f"{adapter_dir} is not an adapter distribution: expected {adapter_dir / 'pyproject.toml'}")
    if upstream is not None:
        upstream = upstream.expanduser().resolve()
        if not upstream.is_dir():
            raise EnvError(f"--upstream {upstream}: not a directory (a checkout of the upstream repository)")
    path = (path or harness_home() / "envs" / name).expanduser().absolute()
    if path.exists():
        if not force:
            raise EnvError(f"{path} exists: use --force to rebuild it, or `harness env remove {name}`")
        _remove_tree(path)
    use = installer if installer != "auto" else ("uv" if shutil.which("uv") else "pip")
    engine: Path | str = root if root is not None else f"{ENGINE_DIST}=={harness.__version__}"
    base = python or sys.executable
    for cmd in plan(path, base, adapter_dir, engine, use, system_site_packages, pip_args):
        run(cmd)
    interpreter = env_python(path)
    found = probe(interpreter)
    provided = sorted(n for n, origin in found.get("adapters", {}).items() if origin not in ("builtin", ENGINE_DIST))
    if not provided:
        raise EnvError(f"{adapter_dir} installed, but it registers no adapter in the entry-point group harness.adapters")
    _write_freeze(interpreter, path, use)
    record = EnvRecord(name=name, python=str(interpreter), path=str(path), adapters=provided,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"), pins_hash=pins_hash(adapter_dir),
                       adapter_dir=str(adapter_dir), engine=str(engine), installer=use, upstream=str(upstream) if upstream else None,
                       extra={"python_version": found.get("versions", {}).get("python"), "base_python": base,
                              "pip_args": list(pip_args), "system_site_packages": system_site_packages})
    envs = load_envs()
    envs[name] = record
    _save_envs(envs)
    return record


def _write_freeze(interpreter: Path, path: Path, installer: str) -> None:
    """What exactly got installed, beside the environment, for whoever reproduces a number."""
    uv = shutil.which("uv")
    cmd = [uv, "pip", "freeze", "--python", str(interpreter)] if installer == "uv" and uv else [str(interpreter), "-m", "pip", "freeze"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode == 0:
        (path / "harness-freeze.txt").write_text(res.stdout, encoding="utf-8")


def _remove_tree(path: Path) -> None:
    if not (path / "pyvenv.cfg").exists():
        raise EnvError(f"{path} does not look like a virtualenv (no pyvenv.cfg); not deleting it")
    shutil.rmtree(path)


def remove_env(name: str, keep_files: bool = False) -> EnvRecord:
    envs = load_envs()
    rec = get_env(name)
    if not keep_files and Path(rec.path).exists():
        _remove_tree(Path(rec.path))
    del envs[name]
    _save_envs(envs)
    return rec


def status(rec: EnvRecord) -> str:
    """``ok``, ``missing`` (the interpreter is gone) or ``stale`` (the adapter's pins changed)."""
    if not os.path.exists(rec.python):
        return "missing"
    adapter_dir = Path(rec.adapter_dir)
    if adapter_dir.exists() and pins_hash(adapter_dir) != rec.pins_hash:
        return "stale"
    return "ok"
