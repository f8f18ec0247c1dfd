"""A lazy registry of adapters: built-ins and plugins from the entry-point group ``harness.adapters``.

Nothing is imported to list names: built-ins are ``module:Class`` strings in a table,
plugins are entry points (whose value is the same kind of string). An adapter class is
imported only when a run asks for it, so ``harness list`` never pulls in torch.

A model name may carry an argument after a colon (``replay:preds.jsonl``): the part before
the colon names the adapter, the rest is passed as its ``arg`` option.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:  # harness.adapter imports numpy; `harness list` reads this registry without it
    from harness.adapter import Adapter

ENTRY_POINT_GROUP = "harness.adapters"


@dataclass(frozen=True)
class AdapterEntry:
    name: str
    target: str  # "module:Class"
    origin: str  # "builtin" or the distribution that provides the plugin
    summary: str = ""


BUILTINS: dict[str, AdapterEntry] = {
    e.name: e
    for e in (
        AdapterEntry("empty", "harness.builtin_adapters.trivial:EmptyAdapter", "builtin", "predicts an empty mask (lower bound)"),
        AdapterEntry("full", "harness.builtin_adapters.trivial:FullAdapter", "builtin", "predicts the whole image"),
        AdapterEntry("oracle-box", "harness.builtin_adapters.trivial:OracleBoxAdapter", "builtin",
                     "mask = ground-truth box (what a perfect box gives a box-only model)"),
        AdapterEntry("replay", "harness.builtin_adapters.replay:ReplayAdapter", "builtin",
                     "replay:PATH scores predictions from a JSONL file"),
        AdapterEntry("shapes-reasoner", "harness.builtin_adapters.shapes_reasoner:ShapesReasoner", "builtin",
                     "CPU reasoner for the shapes suite: parses the expression, finds shapes by classical vision"),
    )
}


class UnknownNameError(HarnessError, KeyError):
    """A name that is not registered; the message suggests the closest known names."""

    def __str__(self) -> str:
        return str(self.args[0])


def did_you_mean(kind: str, name: str, known: list[str]) -> UnknownNameError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known))}.")


def plugins() -> dict[str, AdapterEntry]:
    found: dict[str, AdapterEntry] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "plugin"
        found[ep.name] = AdapterEntry(ep.name, ep.value, dist)
    return found


def all_adapters() -> dict[str, AdapterEntry]:
    """Built-ins, then plugins; a plugin may not shadow a built-in name."""
    entries = dict(BUILTINS)
    for name, entry in plugins().items():
        if name not in entries:
            entries[name] = entry
    return entries


def split_model_name(spec: str) -> tuple[str, str | None]:
    """``replay:path/to.jsonl`` -> (``replay``, ``path/to.jsonl``)."""
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


def shipped_adapters(adapters_dir: Path | None = None) -> dict[str, str]:
    """Adapter name -> the distribution folder under ``adapters/`` that registers it, read from each folder's
    pyproject.toml (nothing imported): what a checkout ships whether or not it is installed. Empty for a wheel
    install (no ``adapters/`` beside the package) and on Python 3.10 (no tomllib)."""
    root = adapters_dir if adapters_dir is not None else Path(__file__).resolve().parent.parent / "adapters"
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the hint is a courtesy, not worth a dependency
        return {}
    found: dict[str, str] = {}
    for pyproject in sorted(root.glob("*/pyproject.toml")) if root.is_dir() else ():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        except (OSError, tomllib.TOMLDecodeError):
            continue  # a broken adapter folder is its own tests' business, not the hint's
        for name in project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {}):
            found.setdefault(name, pyproject.parent.name)
    return found


def not_installed_hint(name: str, shipped: dict[str, str] | None = None) -> str:
    """How to get ``name`` when a distribution shipped in ``adapters/`` provides it, else ''."""
    dist = (shipped if shipped is not None else shipped_adapters()).get(name)
    if dist is None:
        return ""
    return (f" {name!r} ships in adapters/{dist} but is not installed here: `harness setup {dist}` (upstream checkout, "
            f"environment, weights) or `harness env create {dist}` (the environment alone) provides it.")


def adapter_class(name: str) -> type[Adapter]:
    entries = all_adapters()
    if name not in entries:
        hint = not_installed_hint(name)
        if hint:
            raise UnknownNameError(f"unknown model {name!r}.{hint}")
        raise did_you_mean("model", name, list(entries))
    from harness.adapter import Adapter

    module, _, attr = entries[name].target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"{entries[name].target} (adapter {name!r}) is not a harness.adapter.Adapter subclass")
    return cls


def create_adapter(spec: str, options: dict[str, Any] | None = None) -> Adapter:
    """Build an adapter from a model spec (``name`` or ``name:arg``) and its options."""
    name, arg = split_model_name(spec)
    opts = dict(options or {})
    if arg is not None:
        opts["arg"] = arg
    return adapter_class(name)(**opts)
