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

Each option is declared once, on its RunConfig field (``RunOption`` in the field's metadata): its
``harness run`` flag and help, how a value is read, whether the file has it as a key (the field's
name), and the environment variable it falls back to. ``harness run``'s parser, the file's known
keys and ``build_config``'s keywords all come from there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.data.protocols import PROTOCOLS
from harness.data.protocols import protocol as protocol_named
from harness.errors import HarnessError
from harness.run.sharding import Shard, parse_shard

# YAML and the adapter registry (importlib.metadata) are imported where used: `harness run --help` reads
# only RunConfig's fields, and stays quick.

DEFAULT_SUITE = "shapes"
DEFAULT_MODELS = ("empty", "full", "oracle-box", "shapes-reasoner")
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


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _names(value: Any) -> tuple[str, ...]:
    """``"val,test"`` (a flag) or ``[val, test]`` (the file) -> ("val", "test")."""
    return tuple(_as_list(value))


def _positive(value: Any, source: str) -> Any:
    if not value > 0:
        raise ConfigError(f"{source} must be positive, got {value}")
    return value


def _positive_seconds(value: float, source: str) -> float:
    if not value > 0:  # 0 or less would fail every sample, silently
        raise ConfigError(f"{source} must be positive seconds, got {value:g}")
    return value


@dataclass(frozen=True)
class RunOption:
    """How a RunConfig field is given: a ``harness run`` flag, a key of the run config file, or both.

    ``type`` reads a given value, the flag's text (argparse calls it too, so a bad number is a usage
    error) or the file's value alike; ``check`` then validates it, given where the value came from
    (the flag, or the file and key) to name in its ConfigError, and may normalise it. A ``bool``
    option is a switch: a flag without a value (``store_true``).
    """

    help: str
    flag: str | None = None  # None: only in the config file
    type: Callable[[Any], Any] = str
    check: Callable[[Any, str], Any] | None = None
    in_file: bool = True  # the config file takes it under the field's name
    env: str | None = None  # an environment variable to fall back to, after the flag and the file


_OPTION = "run_option"  # the key of a RunConfig field's metadata


def _option(help: str, **how: Any) -> dict[str, RunOption]:
    return {_OPTION: RunOption(help, **how)}


@dataclass(frozen=True)
class RunConfig:
    # The field order is the order of `harness run --help` and of the manifest's "config"; a field's
    # metadata says how it is given (RunOption).
    models: tuple[ModelSpec, ...] = field(metadata=_option(
        "comma-separated model names (registered adapters, names from --config, or replay:PATH)", flag="--models"))
    suite: str = field(default=DEFAULT_SUITE, metadata=_option(
        "a built-in suite name or a suite YAML path (default: shapes)", flag="--suite"))
    splits: tuple[str, ...] = field(default=(), metadata=_option(
        "comma-separated splits (default: the suite's default splits)", flag="--splits", type=_names))
    out: Path | None = field(default=None, metadata=_option(
        "run directory; the same --out resumes (default: runs/<suite>)", flag="--out", type=Path))
    data_root: Path | None = field(default=None, metadata=_option(
        "where datasets live (default: config file, then $HARNESS_DATA)", flag="--data-root", type=Path,
        check=lambda path, _: path.expanduser(), env="HARNESS_DATA"))
    limit: int | None = field(default=None, metadata=_option(
        "at most N samples per split (a quick look, not a result)", flag="--limit", type=int, check=_positive))
    batch_size: int = field(default=8, metadata=_option(
        "samples per adapter call; several images only for a multi-image adapter (default 8)", flag="--batch-size", type=int,
        check=_positive))
    device: str = field(default="cpu", metadata=_option(
        "device for the models, e.g. cuda or cpu (default cpu)", flag="--device"))
    bootstrap_rounds: int = field(default=1000, metadata=_option(
        "resamples of the bootstrap intervals of results.json", type=int))
    shard: Shard | None = field(default=None, metadata=_option(
        "i/N: run only the i-th of N exact, disjoint slices (0-based; torchrun sets it from RANK)", flag="--shard",
        check=lambda spec, _: parse_shard(spec), in_file=False))
    timeout: float | None = field(default=None, metadata=_option(  # seconds per sample; a batch gets timeout x its size
        "seconds allowed per sample; a slower sample is recorded as failed", flag="--timeout", type=float, check=_positive_seconds))
    fail_fast: bool = field(default=False, metadata=_option(
        "stop at the first failed sample with its traceback (debugging)", flag="--fail-fast", type=bool, in_file=False))
    retry_failed: bool = field(default=False, metadata=_option(  # on resume, predict again the samples whose last line failed
        "on resume, predict again the samples recorded as failed (new lines supersede the failed ones)", flag="--retry-failed",
        type=bool, in_file=False))
    protocol: str | None = field(default=None, metadata=_option(
        f"score the suite under a paper's own protocol ({', '.join(PROTOCOLS)}; docs/protocols.md)",
        flag="--protocol", check=lambda name, _: protocol_named(name).name))
    # A way of reading the results, not of producing them: it changes the report only (its headline and its
    # per-slice plots), so a resumed run takes the latest one, like --limit.
    focus: str | None = field(default=None, metadata=_option(
        "the report's headline compares this model with each other one (the MODEL-vs-everyone view) instead of naming "
        "the best", flag="--focus"))


def run_options() -> list[tuple[str, RunOption]]:
    """(field name, option) of every RunConfig field, in field order."""
    return [(f.name, f.metadata[_OPTION]) for f in fields(RunConfig)]


_OPTIONS = dict(run_options())
_CONFIG_KEYS = {name for name, option in _OPTIONS.items() if option.in_file}
_FLAGS = {name for name, option in _OPTIONS.items() if option.flag}
_DEFAULTS = {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}


def _given(value: Any) -> bool:
    """Whether a flag or key was given: absent, empty and an unset switch leave it to the next source."""
    return value is not None and value is not False and not (isinstance(value, (str, list, tuple)) and not value)


def resolve(name: str, flag: Any, file: Mapping[str, Any], where: str = "the config file") -> Any:
    """One RunConfig field's value: the flag when given, else the config file's key (``file``, read from
    ``where``), else the option's environment variable, else the field's default; read and checked."""
    option = _OPTIONS[name]
    sources = ((flag, option.flag or name), (file.get(name) if option.in_file else None, f"{where}: {name}"),
               (os.environ.get(option.env) if option.env else None, f"${option.env}"))
    for value, source in sources:  # an error names where the value came from: the flag, the file's key, the variable
        if _given(value):
            try:
                read = option.type(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{source} {value!r} cannot be read ({exc})") from exc
            return option.check(read, source) if option.check else read
    return _DEFAULTS.get(name)


def resolve_data_root(flag: Path | None, config_file: Path | None = None) -> Path | None:
    """Where real datasets live: ``--data-root``, else ``data_root`` of the run config file, else $HARNESS_DATA."""
    return resolve("data_root", flag, load_config_file(config_file) if config_file else {}, str(config_file))


# A model's display name is also its folder in the run (RUN/<name>/<split>.jsonl), and the report,
# leaderboard, table and published-row matching show and match it as typed: so it is never rewritten.
# A name that is not a safe folder name is refused, as are two names that would share a folder.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,127}")
SAFE_NAME_RULE = "letters, digits and . _ + - only, not starting with '.', at most 128 characters"


def display_name(spec: str) -> str:
    """The model's display name, which is also its folder in the run: ``replay:preds/lens.jsonl`` ->
    ``replay-lens``. A name that is not a safe folder name is refused (ConfigError), never rewritten."""
    from harness.registry import split_model_name

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
    from harness.data.yamlfile import read_yaml

    data = read_yaml(path, ConfigError, what="config file ") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a run config must be a YAML mapping")
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_CONFIG_KEYS))}")
    if "models" in data and not isinstance(data["models"], dict):
        raise ConfigError(f"{path}: 'models' must map model names to their settings")
    return data


def build_config(config_file: Path | None = None, **flags: Any) -> RunConfig:
    """Merge the config file (if any) with flags (which win) into one RunConfig. ``flags`` are the fields
    that have a ``harness run`` flag, by field name (``data_root="/data"``, ``fail_fast=True``), as
    argparse gives them or as Python values."""
    unknown = sorted(set(flags) - _FLAGS)
    if unknown:
        raise TypeError(f"build_config() got unexpected keyword argument(s) {', '.join(unknown)} (it takes {', '.join(sorted(_FLAGS))})")
    data = load_config_file(config_file) if config_file else {}
    where = str(config_file) if config_file else "--models"
    # Models combine the two sources: --models picks names, the file's mapping holds their settings.
    file_models: dict[str, Any] = data.get("models") or {}
    names = _as_list(flags.get("models")) or list(file_models) or list(DEFAULT_MODELS)
    values = {name: resolve(name, flags.get(name), data, str(config_file)) for name in _OPTIONS if name != "models"}
    models = _model_specs(names, file_models, where)
    if values["focus"] is not None and values["focus"] not in {m.name for m in models}:
        source = "--focus" if _given(flags.get("focus")) else f"{config_file}: focus"
        raise ConfigError(f"{source} {values['focus']!r} is not a model of this run (models: {', '.join(m.name for m in models)})")
    return RunConfig(models=models, **values)
