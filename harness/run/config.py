"""One typed run configuration, built from the command line and/or a ``--config run.yaml``.

The YAML file holds what does not fit on a command line, per-model settings above all::

    suite: shapes                 # name or path
    splits: [val]
    out: runs/my-run
    data_root: /data              # where real datasets live
    models:
      shapes-reasoner: {}         # a registered adapter, no options
      lens-cot:                   # a display name of your own...
        adapter: lens             # ...for a registered adapter
        options: {variant: cot}   # passed to the adapter's constructor
        env: lens                 # run in the environment `harness env create lens` made
      segzero:
        python: /opt/venvs/segzero/bin/python   # or in any interpreter that has the engine

Command-line flags override the file; ``--models`` picks models by display name from the
file, or names registered adapters directly (``replay:PATH`` included).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.yamlfile import read_yaml
from harness.errors import HarnessError
from harness.registry import split_model_name
from harness.run.sharding import Shard, parse_shard

DEFAULT_SUITE = "shapes"
DEFAULT_MODELS = ("empty", "full", "oracle-box", "shapes-reasoner")
_CONFIG_KEYS = {"suite", "splits", "out", "data_root", "models", "limit", "batch_size", "device", "bootstrap_rounds", "timeout"}
_MODEL_KEYS = {"adapter", "options", "python", "env"}


class ConfigError(HarnessError):
    """A run configuration that cannot be used; names the file or flag."""


@dataclass(frozen=True)
class ModelSpec:
    """A model of a run: its display name (directory name), adapter spec and options.

    ``python`` (an interpreter) or ``env`` (a managed environment, ``local`` = in-process) run
    the model isolated in its own environment (harness.run.remote); neither changes its fingerprint.
    """

    name: str
    adapter: str
    options: dict[str, Any] = field(default_factory=dict)
    python: str | None = None
    env: str | None = None


@dataclass(frozen=True)
class RunConfig:
    models: tuple[ModelSpec, ...]
    suite: str = DEFAULT_SUITE
    splits: tuple[str, ...] = ()
    out: Path | None = None
    data_root: Path | None = None
    limit: int | None = None
    batch_size: int = 8
    device: str = "cpu"
    bootstrap_rounds: int = 1000
    shard: Shard | None = None
    timeout: float | None = None  # seconds per sample; a batch gets timeout x its size
    fail_fast: bool = False
    retry_failed: bool = False  # on resume, predict again the samples whose last line failed
    protocol: str | None = None  # a named paper protocol (harness/data/protocols.py); None: the suite's own (lisa)


# A model's display name is also its folder in the run (RUN/<name>/<split>.jsonl), and the report,
# leaderboard, table and published-row matching show and match it as typed: so it is never rewritten.
# A name that is not a safe folder name is refused, as are two names that would share a folder.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,127}")
SAFE_NAME_RULE = "letters, digits and . _ + - only, not starting with '.', at most 128 characters"


def display_name(spec: str) -> str:
    """The model's display name, which is also its folder in the run: ``replay:preds/lens.jsonl`` ->
    ``replay-lens``. A name that is not a safe folder name is refused (ConfigError), never rewritten."""
    name, arg = split_model_name(spec)
    if arg is not None:
        name = f"{name}-{Path(arg).stem}"
    if not _SAFE_NAME.fullmatch(name):
        hint = (f" (the name comes from {spec!r}: rename the file, or name the model in a --config file: "
                f"models: {{NAME: {{adapter: {split_model_name(spec)[0]}, options: {{path: ...}}}}}})") if arg is not None else ""
        raise ConfigError(f"model name {name!r} cannot be a folder of the run; a model name takes {SAFE_NAME_RULE}{hint}")
    return name


def _model_specs(names: list[str], from_file: dict[str, Any], where: str) -> tuple[ModelSpec, ...]:
    specs = []
    for name in names:
        if name in from_file:
            entry = from_file[name] or {}
            if not isinstance(entry, dict) or set(entry) - _MODEL_KEYS:
                raise ConfigError(f"{where}: model {name!r} takes only {', '.join(sorted(_MODEL_KEYS))}")
            options = entry.get("options") or {}
            if not isinstance(options, dict):
                raise ConfigError(f"{where}: options of model {name!r} must be a mapping")
            python, env = entry.get("python"), entry.get("env")
            if not isinstance(python, (str, type(None))) or not isinstance(env, (str, type(None))) or (python and env):
                raise ConfigError(f"{where}: model {name!r}: give at most one of python (an interpreter path) and env (a name)")
            # A relative interpreter path is taken from the working directory, like out:; never
            # resolve symlinks (a venv's python is a symlink out of the venv).
            python = os.path.abspath(os.path.expanduser(python)) if python and ("/" in python or python.startswith("~")) else python
            specs.append(ModelSpec(name=display_name(name), adapter=str(entry.get("adapter", name)), options=options,
                                   python=python or None, env=env or None))
        else:
            specs.append(ModelSpec(name=display_name(name), adapter=name))
    seen = [s.name for s in specs]
    dupes = sorted({n for n, typed in zip(seen, names) if names.count(typed) > 1})
    if dupes:
        raise ConfigError(f"model name(s) {', '.join(dupes)} given twice")
    # Two names that would share a folder (on a case-insensitive file system too): refused, both as typed.
    folders: dict[str, tuple[str, str]] = {}
    for typed, spec in zip(names, specs):
        other, folder = folders.setdefault(spec.name.lower(), (typed, spec.name))
        if other != typed:
            where = (f"the folder {folder!r}" if folder == spec.name else
                     f"a folder on a case-insensitive file system ({folder!r} and {spec.name!r})")
            raise ConfigError(f"models {other!r} and {typed!r} would share {where} of the run; give one of them another name")
    return tuple(specs)


def load_config_file(path: Path) -> dict[str, Any]:
    data = read_yaml(path, ConfigError, what="config file ") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a run config must be a YAML mapping")
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_CONFIG_KEYS))}")
    if "models" in data and not isinstance(data["models"], dict):
        raise ConfigError(f"{path}: 'models' must map model names to their settings")
    return data


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def build_config(
    config_file: Path | None = None,
    models: str | None = None,
    suite: str | None = None,
    splits: str | None = None,
    out: Path | None = None,
    data_root: Path | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    shard: str | None = None,
    timeout: float | None = None,
    fail_fast: bool = False,
    retry_failed: bool = False,
) -> RunConfig:
    """Merge the config file (if any) with flags (which win) into one RunConfig."""
    data = load_config_file(config_file) if config_file else {}
    where = str(config_file) if config_file else "--models"
    file_models: dict[str, Any] = data.get("models") or {}
    names = _as_list(models) or list(file_models) or list(DEFAULT_MODELS)
    if limit is not None and limit <= 0:
        raise ConfigError(f"--limit must be positive, got {limit}")
    seconds = timeout if timeout is not None else (float(data["timeout"]) if data.get("timeout") is not None else None)
    if seconds is not None and not seconds > 0:  # 0 or less would fail every sample, silently
        raise ConfigError(f"--timeout must be positive seconds, got {seconds:g}")
    bs = batch_size if batch_size is not None else int(data.get("batch_size", 8))
    if bs <= 0:
        raise ConfigError(f"--batch-size must be positive, got {bs}")
    # Where real datasets live: the flag, then the config file, then $HARNESS_DATA.
    root_str = data.get("data_root") or os.environ.get("HARNESS_DATA")
    root = data_root or (Path(root_str).expanduser() if root_str else None)
    return RunConfig(
        models=_model_specs(names, file_models, where),
        suite=suite or str(data.get("suite", DEFAULT_SUITE)),
        splits=tuple(_as_list(splits) or _as_list(data.get("splits"))),
        out=out or (Path(data["out"]) if data.get("out") else None),
        data_root=root,
        limit=limit if limit is not None else data.get("limit"),
        batch_size=bs,
        device=device or str(data.get("device", "cpu")),
        bootstrap_rounds=int(data.get("bootstrap_rounds", 1000)),
        shard=parse_shard(shard) if shard else None,
        timeout=seconds,
        fail_fast=fail_fast,
        retry_failed=retry_failed,
    )
