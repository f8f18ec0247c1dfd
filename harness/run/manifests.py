"""What an adapter distribution shipped in ``adapters/`` needs on a machine, read from its manifest without its environment.

Each distribution ``adapters/<dist>/`` has a plain-data module ``harness_<dist>/manifest.py`` (standard library
only, never torch), which ``harness setup`` and ``harness doctor`` execute on their own, outside the package (its
``__init__`` and the rest of the adapter are not imported). What they read from it:

- ``UPSTREAM``: ``{"repo": "owner/name", "revision": "<commit prefix>", "env": "HARNESS_<NAME>_REPO"}``, the
  upstream repository at the revision the adapter is tested against; absent where none is needed;
- ``DEFAULT_VARIANT`` and ``WEIGHTS``: variant (or model name) -> the Hugging Face repositories it loads;
- ``MEMORY_GB`` (variant -> GPU memory it needs) with ``MEMORY_SOURCE`` (where the figure comes from);
- ``DTYPE``: the dtype the adapter uses on CUDA; ``PYTHON`` (optional): the interpreter version it needs;
  ``UPSTREAM_NOTE`` (optional): what setup says beside the checkout (a model that needs another revision).

A model name a user types (``lens``, ``visionreasoner``, ``sa2va-qwen2.5vl-7b``) names its distribution through
the entry points in the distribution's pyproject.toml (harness.registry.shipped_adapters); a name that is also a
key of ``WEIGHTS`` selects that variant.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.errors import HarnessError
from harness.registry import shipped_adapters
from harness.run.envs import engine_root

DTYPES = ("bfloat16", "float16", "float32")


class ManifestError(HarnessError):
    """A model that is not shipped here, or a manifest that lacks what setup and doctor read."""


@dataclass(frozen=True)
class UpstreamPin:
    repo: str  # owner/name on GitHub
    revision: str  # a commit prefix
    env: str  # the variable the adapter reads the checkout from

    @property
    def folder(self) -> str:
        """``hustvl/LENS`` -> ``hustvl__LENS`` (the layout of shared/upstream and $HARNESS_HOME/upstream)."""
        return self.repo.replace("/", "__")


@dataclass(frozen=True)
class ModelManifest:
    dist: str  # the folder under adapters/ (and the environment's name)
    path: Path  # the manifest file
    upstream: UpstreamPin | None
    default_variant: str
    weights: dict[str, tuple[str, ...]]
    memory_gb: dict[str, float]
    memory_source: str
    dtype: str
    python: str | None = None
    upstream_note: str = ""

    def variant(self, name: str | None) -> str:
        """``name`` if the manifest knows it, the default when None; a ManifestError listing the known ones else."""
        chosen = name or self.default_variant
        if chosen not in self.weights:
            raise ManifestError(f"{self.dist}: unknown variant {chosen!r} ({self.path}); known: {', '.join(sorted(self.weights))}")
        return chosen


def adapters_dir() -> Path:
    root = engine_root()
    if root is None or not (root / "adapters").is_dir():
        raise ManifestError("this harness is not a checkout with adapters/: setup and doctor read the models' manifests there "
                            "(clone the repository and `pip install -e .`)")
    return root / "adapters"


def resolve(model: str, base: Path | None = None) -> tuple[str, str | None]:
    """A name a user types -> (distribution, the variant it names or None)."""
    base = base or adapters_dir()
    if (base / model / "pyproject.toml").is_file():
        return model, None
    shipped = shipped_adapters(base)
    if model in shipped:
        return shipped[model], model
    from harness.registry import did_you_mean

    known = sorted({*shipped, *shipped.values()})
    raise ManifestError(f"{did_you_mean('model', model, known)} (the models shipped in {base})")


def _execute(path: Path, dist: str) -> ModuleType:
    name = f"_harness_manifest_{dist.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ManifestError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ManifestError(f"{path} does not run on its own ({type(exc).__name__}: {exc}); a manifest is plain data "
                            "and imports nothing from its package") from exc
    finally:
        del sys.modules[name]
    return module


def _field(module: ModuleType, path: Path, name: str, kind: type | tuple[type, ...]) -> Any:
    value = getattr(module, name, None)
    if not isinstance(value, kind):
        raise ManifestError(f"{path}: {name} is missing or not a {getattr(kind, '__name__', kind)} (harness setup and doctor read it; "
                            "harness/run/manifests.py says what each field holds)")
    return value


def load_manifest(dist: str, base: Path | None = None) -> ModelManifest:
    """The manifest of ``adapters/<dist>``, checked."""
    base = base or adapters_dir()
    path = base / dist / f"harness_{dist.replace('-', '_')}" / "manifest.py"
    if not path.is_file():
        raise ManifestError(f"{base / dist} has no manifest: expected {path}")
    module = _execute(path, dist)
    raw_upstream = getattr(module, "UPSTREAM", None)
    upstream = None
    if raw_upstream is not None:
        if not (isinstance(raw_upstream, dict) and all(isinstance(raw_upstream.get(k), str) for k in ("repo", "revision", "env"))
                and raw_upstream["repo"].count("/") == 1):
            raise ManifestError(f"{path}: UPSTREAM must be {{'repo': 'owner/name', 'revision': '<commit>', 'env': 'HARNESS_..._REPO'}}")
        upstream = UpstreamPin(raw_upstream["repo"], raw_upstream["revision"], raw_upstream["env"])
    weights = {str(k): tuple(v) for k, v in _field(module, path, "WEIGHTS", dict).items()}
    memory = {str(k): float(v) for k, v in _field(module, path, "MEMORY_GB", dict).items()}
    default = _field(module, path, "DEFAULT_VARIANT", str)
    if default not in weights or set(memory) != set(weights):
        raise ManifestError(f"{path}: DEFAULT_VARIANT must be a key of WEIGHTS, and MEMORY_GB must have the same keys as WEIGHTS")
    dtype = _field(module, path, "DTYPE", str)
    if dtype not in DTYPES:
        raise ManifestError(f"{path}: DTYPE {dtype!r} is not one of {', '.join(DTYPES)}")
    python = getattr(module, "PYTHON", None)
    note = getattr(module, "UPSTREAM_NOTE", "")
    return ModelManifest(dist=dist, path=path, upstream=upstream, default_variant=default, weights=weights, memory_gb=memory,
                         memory_source=_field(module, path, "MEMORY_SOURCE", str), dtype=dtype,
                         python=python if isinstance(python, str) else None, upstream_note=note if isinstance(note, str) else "")


def shipped_dists(base: Path | None = None) -> list[str]:
    base = base or adapters_dir()
    return sorted(p.parent.name for p in base.glob("*/pyproject.toml"))


def select(model: str, variant: str | None = None, base: Path | None = None) -> tuple[ModelManifest, str]:
    """The manifest of the distribution ``model`` names, and the variant to use: ``variant`` when given, else the
    model name when the manifest has it as a variant (``visionreasoner``), else the manifest's default."""
    dist, named = resolve(model, base)
    manifest = load_manifest(dist, base)
    return manifest, manifest.variant(variant or (named if named in manifest.weights else None))
