"""Slices: metrics broken down by properties of the samples and their ground truth.

The definitions are data (``suites/slices/default.yaml``, extended per suite by
``suites/slices/<suite>.yaml``; the kinds of ``by`` are documented there). A family of slices
assigns each sample of a split to zero, one or (``word_lists``) several labelled slices; every
slice gets the split's cIoU and gIoU over its samples, with its ``n`` and a bootstrap interval when
it has at least ``min_n`` scored samples (fewer: n and values, no interval, rather than a
misleading one).

Everything is computed from the samples and their ground truth, never from predictions, so a
slice holds the same ids for every model of a run: two models can be compared slice by slice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.conventions import Conventions
from harness.data.suites import Suite
from harness.data.yamlfile import read_yaml
from harness.errors import HarnessError
from harness.resources import resource_dir
from harness.score.metrics import ScoreArrays, summarize
from harness.score.paired import Columns, deviations_by_group
from harness.types import Sample, SampleScore

SLICES_VERSION = 1
KINDS = ("coco_area", "relative_area_terciles", "words", "word_lists", "meta", "no_target", "sentences_per_object")
# The keys of a slice's result (a subset of a split result's).
RESULT_KEYS = ("n", "n_ciou", "n_giou", "ciou", "giou", "ciou_ci95", "giou_ci95", "n_acc", "t_acc")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class SliceError(HarnessError):
    """A slice definition file that cannot be used; names the file."""


@dataclass(frozen=True)
class Family:
    name: str
    by: str
    params: Mapping[str, Any]
    description: str


@dataclass(frozen=True)
class SliceSet:
    """The merged slice definitions of one suite."""

    version: int
    min_n: int
    word_lists: Mapping[str, tuple[str, ...]]
    families: tuple[Family, ...]
    sources: tuple[str, ...]  # the files they were read from

    def fingerprint(self) -> str:
        doc = [self.version, self.min_n, {k: list(v) for k, v in sorted(self.word_lists.items())},
               [[f.name, f.by, dict(f.params)] for f in self.families]]
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "results.json slices.definitions") -> SliceSet:
        """The definitions as results.json carries them (``to_json``)."""
        try:
            lists = {str(k): tuple(v) for k, v in data["word_lists"].items()}
            families = tuple(_family({k: v for k, v in f.items()}, where, lists) for f in data["families"])
            return cls(int(data["version"]), int(data["min_n"]), lists, families, (where,))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise SliceError(f"{where}: unreadable slice definitions ({exc})") from exc

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "min_n": self.min_n, "fingerprint": self.fingerprint(),
                "word_lists": {k: list(v) for k, v in self.word_lists.items()},
                "families": [{"name": f.name, "by": f.by, "description": f.description, **_plain(dict(f.params))} for f in self.families]}


def _plain(value: Any) -> Any:
    """Tuples as lists, as JSON gives them back: ``from_json`` reads the in-memory document (the report rendered
    by ``harness run``) exactly as it reads results.json from disk."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _bins(value: Any, where: str) -> list[tuple[int, int | None]]:
    out = []
    for b in value:
        if not (isinstance(b, list) and len(b) == 2 and isinstance(b[0], int) and (b[1] is None or isinstance(b[1], int))):
            raise SliceError(f"{where}: a bin is [lo, hi] with integers (hi may be null), got {b!r}")
        out.append((b[0], b[1]))
    return out


def _family(entry: Any, where: str, lists: Mapping[str, Any]) -> Family:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry.get("by") not in KINDS:
        raise SliceError(f"{where}: every slice needs a name and `by`, one of {', '.join(KINDS)}; got {entry!r}")
    params = {k: v for k, v in entry.items() if k not in ("name", "by", "description")}
    by, name = entry["by"], entry["name"]
    if by in ("words", "sentences_per_object"):
        params["bins"] = _bins(params.get("bins") or [], f"{where}: slice {name!r}")
        if not params["bins"]:
            raise SliceError(f"{where}: slice {name!r} needs bins")
    if by == "coco_area" and not all(isinstance(params.get(k), (int, float)) for k in ("small_below", "large_above")):
        raise SliceError(f"{where}: slice {name!r} needs numbers small_below and large_above")
    if by == "meta" and not (isinstance(params.get("keys"), list) and params["keys"]):
        raise SliceError(f"{where}: slice {name!r} needs a list of metadata keys")
    if by == "word_lists":
        unknown = [n for n in params.get("lists") or [] if n not in lists]
        if unknown or not params.get("lists"):
            raise SliceError(f"{where}: slice {name!r} names unknown word lists {unknown} (known: {', '.join(lists)})")
    return Family(name, by, params, str(entry.get("description", "")))


def slice_files(suite: Suite) -> list[Path]:
    """default.yaml, then the suite's own file (built-in folder, or a slices/ folder beside the suite file)."""
    base = resource_dir("suites") / "slices"
    files = [base / "default.yaml"]
    for folder in dict.fromkeys([base, Path(suite.path).parent / "slices"]):
        candidate = folder / f"{suite.name}.yaml"
        if candidate.is_file() and candidate not in files:
            files.append(candidate)
    return files


def load_slices(suite: Suite, files: Sequence[Path] | None = None) -> SliceSet:
    """The merged definitions for ``suite`` (or the given files, merged in order)."""
    files = [Path(f) for f in files] if files is not None else slice_files(suite)
    version, min_n = SLICES_VERSION, 10
    lists: dict[str, tuple[str, ...]] = {}
    raw: dict[str, Any] = {}
    for path in files:
        data = read_yaml(path, SliceError, "slice definitions ")
        if not isinstance(data, dict):
            raise SliceError(f"{path}: a slice file is a mapping with `slices` (and optional word_lists, min_n)")
        if data.get("version", SLICES_VERSION) != SLICES_VERSION:
            raise SliceError(f"{path}: slice definitions version {data.get('version')!r}, this harness reads {SLICES_VERSION}")
        if "min_n" in data:
            if not isinstance(data["min_n"], int) or data["min_n"] < 2:
                raise SliceError(f"{path}: min_n must be an integer >= 2, got {data['min_n']!r}")
            min_n = data["min_n"]
        for k, words in (data.get("word_lists") or {}).items():
            if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
                raise SliceError(f"{path}: word list {k!r} must be a list of words (quote YAML booleans such as \"no\")")
            lists[str(k)] = tuple(w.lower().strip() for w in words)
        entries = data.get("slices") or []
        if not isinstance(entries, list):
            raise SliceError(f"{path}: `slices` must be a list")
        for entry in entries:
            raw[str((entry or {}).get("name")) if isinstance(entry, dict) else repr(entry)] = (entry, str(path))
    families = tuple(_family(entry, where, lists) for entry, where in raw.values())
    return SliceSet(version, min_n, lists, families, tuple(str(p) for p in files))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class _WordList:
    """One word list compiled for matching: whole words (a set), phrases, and word endings ("*n't")."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.words = frozenset(e for e in entries if " " not in e and not e.startswith("*"))
        self.phrases = tuple(f" {e} " for e in entries if " " in e and not e.startswith("*"))
        self.endings = tuple(e[1:] for e in entries if e.startswith("*"))

    def matches(self, tokens: Sequence[str]) -> bool:
        if not self.words.isdisjoint(tokens):
            return True
        if self.endings and any(t.endswith(self.endings) for t in tokens):
            return True
        if self.phrases:
            padded = f" {' '.join(tokens)} "
            return any(p in padded for p in self.phrases)
        return False


def _bin_label(lo: int, hi: int | None, unit: str) -> str:
    return f"{lo}+ {unit}" if hi is None else (f"{lo} {unit}" if lo == hi else f"{lo}-{hi} {unit}")


def _binned(values: Sequence[int], bins: Sequence[tuple[int, int | None]], unit: str) -> dict[str, np.ndarray]:
    v = np.asarray(values)
    return {_bin_label(lo, hi, unit): (v >= lo) & (True if hi is None else v <= hi) for lo, hi in bins}


def _family_masks(family: Family, samples: Sequence[Sample], lists: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """label -> boolean membership over ``samples`` (empty slices dropped by the caller)."""
    p = family.params
    if family.by in ("coco_area", "relative_area_terciles"):
        area = np.array([s.gt.area for s in samples], dtype=np.float64)
        targeted = area > 0
        if family.by == "coco_area":
            return {"small": targeted & (area < p["small_below"]),
                    "medium": targeted & (area >= p["small_below"]) & (area <= p["large_above"]),
                    "large": targeted & (area > p["large_above"])}
        rel = area / np.array([max(1, s.gt.height * s.gt.width) for s in samples], dtype=np.float64)
        if targeted.sum() < 3:
            return {}
        q1, q2 = np.quantile(rel[targeted], [1 / 3, 2 / 3])
        return {"lower third": targeted & (rel <= q1), "middle third": targeted & (rel > q1) & (rel <= q2),
                "upper third": targeted & (rel > q2)}
    if family.by == "words":
        return _binned([len(words(s.expression)) for s in samples], p["bins"], "words")
    if family.by == "word_lists":
        tokens = [words(s.expression) for s in samples]
        compiled = {name: _WordList(lists[name]) for name in p["lists"]}
        return {name: np.array([wl.matches(t) for t in tokens], dtype=bool) for name, wl in compiled.items()}
    if family.by == "meta":
        values = [next((s.meta[k] for k in p["keys"] if s.meta.get(k) is not None), None) for s in samples]
        labels = sorted({str(v) for v in values if v is not None}, key=lambda x: (not x.isdigit(), int(x) if x.isdigit() else 0, x))
        return {label: np.array([v is not None and str(v) == label for v in values], dtype=bool) for label in labels}
    if family.by == "no_target":
        nt = np.array([s.no_target for s in samples], dtype=bool)
        return {"targeted": ~nt, "no target": nt}
    if family.by == "sentences_per_object":
        keys = [s.meta.get("object") for s in samples]
        if any(k is None for k in keys):
            return {}
        counts = Counter(keys)
        return _binned([counts[k] for k in keys], p["bins"], "per object")
    raise AssertionError(family.by)


def assign(samples: Sequence[Sample], defs: SliceSet) -> dict[str, dict[str, np.ndarray]]:
    """family -> label -> boolean membership over ``samples``; families and slices without samples left out."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for family in defs.families:
        got = {label: m for label, m in _family_masks(family, samples, defs.word_lists).items() if m.any()}
        if got:
            out[family.name] = got
    return out


def _intervals(arr: ScoreArrays, ids: Sequence[str], groups: Sequence[np.ndarray], eps: float, rounds: int,
               ) -> list[dict[str, list[float]]]:
    """Percentile 95% intervals of cIoU and gIoU of each group, all from one set of resamples of the split.

    The shared paired bootstrap against a model that scores 0 everywhere is the plain bootstrap of
    the metric (a difference from zero), so no second bootstrap is written here."""
    model = Columns(tuple(ids), arr.inter, arr.union, arr.iou, arr.in_ciou)
    n = len(ids)
    zero = Columns(tuple(ids), np.zeros(n), np.ones(n), np.zeros(n), np.ones(n, dtype=bool))
    out = []
    for by_metric in deviations_by_group(model, zero, groups, ("ciou", "giou"), eps, rounds):
        res = {}
        for m, (center, dev) in by_metric.items():
            if dev.size:
                res[f"{m}_ci95"] = [float(center + np.percentile(dev, 2.5)), float(center + np.percentile(dev, 97.5))]
        out.append(res)
    return out


def slice_metrics(scores: Mapping[str, SampleScore], samples: Sequence[Sample], defs: SliceSet, conv: Conventions,
                  bootstrap_rounds: int, membership: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                  ) -> dict[str, dict[str, dict[str, Any]]]:
    """family -> label -> metrics of one model on one split, over the slice's samples that were predicted.

    Intervals: each resample draws the split's predicted samples with replacement, and a slice's
    metric is computed on the drawn samples in it (one bootstrap per split for every slice)."""
    membership = membership if membership is not None else assign(samples, defs)
    have = np.array([s.id in scores for s in samples], dtype=bool)
    predicted = np.flatnonzero(have)
    chosen_all = [scores[samples[int(i)].id] for i in predicted]
    arrays = ScoreArrays.of(chosen_all)  # once; a slice's are its rows (in the same order), not rebuilt from objects
    out: dict[str, dict[str, dict[str, Any]]] = {}
    wanted: list[tuple[str, str, np.ndarray]] = []
    for family, by_label in membership.items():
        for label, member in by_label.items():
            res = summarize(arrays.subset(member[predicted]), conv, bootstrap_rounds=0)
            if res["n"] >= defs.min_n:  # fewer: no interval rather than a misleading one
                wanted.append((family, label, member[predicted]))
            res["n_expected"] = int(member.sum())
            out.setdefault(family, {})[label] = {k: res[k] for k in (*RESULT_KEYS, "n_expected") if k in res}
    if wanted and bootstrap_rounds > 0:
        ids = [samples[int(i)].id for i in predicted]
        for (family, label, _), ci in zip(wanted, _intervals(arrays, ids, [g for _, _, g in wanted], conv.ciou_eps,
                                                             bootstrap_rounds)):
            out[family][label].update(ci)
    return out
