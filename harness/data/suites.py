"""Suites are data: a YAML file under ``suites/`` says where samples come from and how to score.

A suite names its source format and parameters, its splits with their official counts, the
sample unit and scoring conventions, the published numbers with their sources, and a
version. ``--suite`` takes a built-in name or a path to such a file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.conventions import Conventions
from harness.data.protocols import DEFAULT as DEFAULT_PROTOCOL
from harness.data.protocols import ProtocolError, apply_protocol
from harness.data.protocols import protocol as named
from harness.data.published import FetchTable, parse_fetch
from harness.data.yamlfile import read_yaml
from harness.errors import HarnessError
from harness.registry import did_you_mean
from harness.resources import resource_dir


class SuiteError(HarnessError):
    """A suite file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Published:
    model: str
    split: str
    metric: str
    value: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "split": self.split, "metric": self.metric, "value": self.value, "source": self.source}


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    description: str
    source_format: str
    source_params: dict[str, Any]
    splits: dict[str, dict[str, Any]]
    default_splits: tuple[str, ...]
    conventions: Conventions
    published: tuple[Published, ...]
    path: Path
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    # Splits whose metrics the suite's results also average (results.json ``average``; SA-Co/Gold's
    # "Average" of its seven subsets); published rows name it as split ``average``.
    average: tuple[str, ...] = ()
    # Where the data is published and how ``harness data fetch`` gets it (harness/data/published.py).
    fetch: FetchTable | None = None

    @property
    def fingerprint(self) -> str:
        """sha256 of what decides the numbers: name, version, source, splits and conventions.

        The description, the published rows and where the data is published (``fetch``) are left out,
        so correcting a published number or a download address does not make every stored run and
        baseline incomparable.
        """
        scored = {k: v for k, v in self.raw.items() if k not in ("description", "published", "fetch")}
        canonical = json.dumps(scored, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def select_splits(self, names: list[str] | None) -> list[str]:
        if not names:
            return list(self.default_splits)
        for n in names:
            if n not in self.splits:
                raise did_you_mean(f"split of suite {self.name!r}", n, list(self.splits))
        return names

    @property
    def protocol(self) -> str:
        """The evaluation protocol the suite follows (harness/data/protocols.py); ``lisa`` unless it says."""
        return str(self.raw.get("protocol") or DEFAULT_PROTOCOL)

    def summary(self) -> dict[str, Any]:
        out = {"name": self.name, "version": self.version, "fingerprint": self.fingerprint,
               "description": self.description, "path": str(self.path)}
        if self.protocol != DEFAULT_PROTOCOL:  # the default is not written, so results of lisa suites read as before
            out["protocol"] = self.protocol
        return out


def builtin_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted(resource_dir("suites").glob("*.yaml"))}


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in data:
        raise SuiteError(f"{path}: missing required field {key!r}")
    if not isinstance(data[key], kind):
        want = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise SuiteError(f"{path}: field {key!r} must be a {want}, got {type(data[key]).__name__}")
    return data[key]


COUNT_KEYS = ("images", "objects", "expressions")
AVERAGE = "average"  # the split name published rows give a suite's average


def _check_counts(counts: Any, where: str) -> None:
    """A split's optional official ``counts``: images, objects, expressions (int, or null if unpublished)."""
    if counts is None:
        return
    if not isinstance(counts, dict):
        raise SuiteError(f"{where}: counts must be a mapping of {', '.join(COUNT_KEYS)}")
    unknown = sorted(set(counts) - set(COUNT_KEYS))
    if unknown:
        raise SuiteError(f"{where}: unknown count(s) {', '.join(unknown)}; known: {', '.join(COUNT_KEYS)}")
    for key, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise SuiteError(f"{where}: counts.{key} must be a non-negative integer or null, got {value!r}")


def parse_suite(data: Any, path: Path) -> Suite:
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a YAML mapping")
    name = _require(data, "name", str, path)
    source = dict(_require(data, "source", dict, path))
    fmt = source.pop("format", None)
    if not isinstance(fmt, str):
        raise SuiteError(f"{path}: source.format must name a source format")
    splits = _require(data, "splits", dict, path)
    if not splits:
        raise SuiteError(f"{path}: the suite has no splits")
    for split, spec in splits.items():
        if spec is not None and not isinstance(spec, dict):
            raise SuiteError(f"{path}: split {split!r} must be a mapping")
        _check_counts((spec or {}).get("counts"), f"{path}: split {split!r}")
    default = data.get("default_splits", list(splits))
    if not isinstance(default, list) or any(s not in splits for s in default):
        raise SuiteError(f"{path}: default_splits must list splits of the suite ({', '.join(splits)})")
    try:
        conventions = Conventions.from_dict(data.get("conventions"), where=f"{path}: conventions")
    except HarnessError as exc:
        raise SuiteError(str(exc)) from exc
    average = data.get("average") or []
    if not isinstance(average, list) or any(not isinstance(s, str) or s not in splits for s in average) \
            or len(set(average)) != len(average):
        raise SuiteError(f"{path}: average must list distinct splits of the suite ({', '.join(splits)})")
    if AVERAGE in splits and average:
        raise SuiteError(f"{path}: a suite with an average may not have a split named {AVERAGE!r}")
    named = set(splits) | ({AVERAGE} if average else set())
    published = []
    for i, row in enumerate(data.get("published") or []):
        try:
            published.append(Published(model=str(row["model"]), split=str(row["split"]), metric=str(row["metric"]),
                                       value=float(row["value"]), source=str(row["source"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise SuiteError(f"{path}: published[{i}] needs model, split, metric, value (number) and source: {exc}") from exc
        if published[-1].split not in named:
            raise SuiteError(f"{path}: published[{i}] names split {published[-1].split!r}, not a split of the suite"
                             + (f" (nor {AVERAGE!r}, its average)" if average else ""))
    try:
        fetch = parse_fetch(data.get("fetch"), str(path), list(splits))
    except HarnessError as exc:
        raise SuiteError(str(exc)) from exc
    return Suite(
        name=name,
        version=str(_require(data, "version", (str, int), path)),
        description=str(data.get("description", "")).strip(),
        source_format=fmt,
        source_params=source,
        splits={k: dict(v or {}) for k, v in splits.items()},
        default_splits=tuple(default),
        conventions=conventions,
        published=tuple(published),
        path=path,
        raw=data,
        average=tuple(average),
        fetch=fetch,
    )


def _moved_hint(path: Path) -> str:
    """Where a missing suite file named like a built-in one is now: the built-in suites lived under
    ``benchmarks/`` before they moved to ``suites/``, and old commands and run configs still name that path."""
    builtin = builtin_suites().get(path.stem)
    if builtin is None or path.suffix not in (".yaml", ".yml"):
        return ""
    return (f"; the built-in suite {path.stem!r} is {builtin} (the built-in suites moved from benchmarks/ to suites/): "
            f"pass --suite {path.stem}")


def load_suite(name_or_path: str, protocol: str | None = None) -> Suite:
    """Load a built-in suite by name, or a suite file by path; under ``protocol`` when one is named."""
    path = Path(name_or_path).expanduser()
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        known = builtin_suites()
        if name_or_path not in known:
            raise did_you_mean("suite", name_or_path, list(known))
        path = known[name_or_path]
    if not path.is_file():
        raise SuiteError(f"suite file {path} does not exist{_moved_hint(path)}")
    raw = read_yaml(path, SuiteError, what="suite file ")
    if isinstance(raw, dict) and (protocol is not None or raw.get("protocol") is not None):
        try:
            named(str(raw.get("protocol") or DEFAULT_PROTOCOL))  # a suite file's own protocol must be a known one
            raw = dict(apply_protocol(raw, protocol, str(path)))
        except ProtocolError as exc:
            raise SuiteError(str(exc)) from exc
    return parse_suite(raw, path)


def stored_suite(info: dict[str, Any]) -> Suite:
    """The suite of a stored run from the summary its manifest keeps: its file where it still exists, else the
    built-in of its name, under the protocol it was run with."""
    path = Path(str(info.get("path", "")))
    return load_suite(str(path) if path.is_file() else str(info.get("name")), info.get("protocol"))
