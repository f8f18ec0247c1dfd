"""``harness inputs``: what each model is shown, per sample, as hashes to diff in review (no GPU).

It lives in the run stage because it prepares each model's inputs as a run does (the run config,
the models' adapters, samples grouped by image as ``harness.run.predict`` groups them).

``harness inputs --models a,b --suite S [--splits x,y] [--limit N] --out FILE`` asks every
model's adapter for ``Adapter.inputs(image, query)`` (its exact prompt and preprocessed
inputs; weights are never loaded) and writes JSON Lines: a header, then one line per model x
sample, sorted, so a committed file diffs line by line::

    {"schema": "harness.publish.inputs", "schema_version": 1, "suite": {...}, "models": {"m": {"adapter": ..., "fingerprint": ...}}}
    {"model": "m", "split": "val", "id": "shapes/val/0000/0", "inputs": {"image": "1f0c...", "prompt": "9a4e..."}}

Every component value is hashed here (sha256, 16 hex digits): text, bytes, numpy arrays (with
dtype and shape), anything else as canonical JSON. An unreadable image or an adapter error
becomes an ``error`` component. ``harness inputs --diff A B`` lists the ids added, removed and
changed (naming the changed components) and exits 1 when anything differs, 0 otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.images import ImageError, load_image
from harness.data.samples import load_samples
from harness.data.suites import load_suite
from harness.errors import HarnessError
from harness.files import write_text_atomic
from harness.records.manifest import fingerprint
from harness.records.store import read_records
from harness.registry import create_adapter
from harness.run.config import build_config
from harness.run.predict import image_groups

INPUTS_SCHEMA = "harness.publish.inputs"  # the name committed inputs files carry (from when this module was in publish)
INPUTS_VERSION = 1
Key = tuple[str, str, str]  # model, split, id


def digest(value: Any) -> str:
    """A short, stable hash of one input component."""
    h = hashlib.sha256()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    if isinstance(value, str):
        h.update(b"str:" + value.encode("utf-8"))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        h.update(b"bytes:" + bytes(value))
    elif isinstance(value, np.ndarray):
        h.update(f"array:{value.dtype.str}:{value.shape}:".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(b"json:" + json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode())
    return h.hexdigest()[:16]


def collect(model_names: str | None, suite_name: str | None, splits: str | Sequence[str] | None = None, limit: int | None = None,
            data_root: Path | None = None, config_file: Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, lines) for the models x samples of a suite, the models' own preprocessing applied."""
    config = build_config(config_file=config_file, models=model_names, suite=suite_name, splits=splits, data_root=data_root, limit=limit)
    suite = load_suite(config.suite)
    samples = load_samples(suite, suite.select_splits(list(config.splits)), config.data_root, config.limit)
    adapters = {m.name: create_adapter(m.adapter, m.options) for m in config.models}
    header = {
        "schema": INPUTS_SCHEMA,
        "schema_version": INPUTS_VERSION,
        "suite": {k: v for k, v in suite.summary().items() if k in ("name", "version", "fingerprint")},
        "models": {n: {"adapter": m.adapter, "fingerprint": fingerprint(a.config())} for (n, a), m in zip(adapters.items(), config.models)},
    }
    lines = []
    for split, split_samples in samples.items():
        for image_path, group in image_groups(split_samples):
            try:
                image: np.ndarray | None = load_image(image_path, suite.conventions.exif)
                error = ""
            except ImageError as exc:
                image, error = None, str(exc)
            for name, adapter in adapters.items():
                for sample in group:
                    if image is None:
                        parts: Mapping[str, Any] = {"error": error}
                    else:
                        try:
                            parts = adapter.inputs(image, sample.query())  # what a model is given: no ground truth
                        except Exception as exc:  # one adapter error is recorded, like a failed prediction
                            parts = {"error": f"{type(exc).__name__}: {exc}"}
                    lines.append({"model": name, "split": split, "id": sample.id,
                                  "inputs": {k: digest(v) for k, v in sorted(parts.items())}})
    lines.sort(key=lambda r: (r["model"], r["split"], r["id"]))
    return header, lines


def write(path: Path, header: Mapping[str, Any], lines: Iterable[Mapping[str, Any]]) -> None:
    text = "".join(json.dumps(r, separators=(",", ":"), sort_keys=False) + "\n" for r in [header, *lines])
    write_text_atomic(path, text)


def read(path: Path) -> tuple[dict[str, Any], dict[Key, dict[str, str]]]:
    if not path.is_file():
        raise HarnessError(f"inputs file {path} does not exist")
    records = read_records(path)
    if not records or records[0].get("schema") != INPUTS_SCHEMA:
        raise HarnessError(f"{path}: not a harness inputs file (first line must be its {INPUTS_SCHEMA!r} header)")
    try:
        entries = {(str(r["model"]), str(r["split"]), str(r["id"])): dict(r["inputs"]) for r in records[1:]}
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: a line lacks model, split, id or inputs ({exc})") from exc
    return records[0], entries


def diff(a: Path, b: Path, max_lines: int = 200) -> tuple[list[str], bool]:
    """Lines describing what changed from ``a`` to ``b`` (at most ``max_lines`` ids), and whether anything did."""
    ha, ea = read(a)
    hb, eb = read(b)
    out = []
    fa, fb = ha.get("suite", {}).get("fingerprint"), hb.get("suite", {}).get("fingerprint")
    if fa != fb:
        out.append(f"suite fingerprint: {fa} -> {fb}")
    for model in sorted(set(ha.get("models", {})) | set(hb.get("models", {}))):
        ma, mb = ha.get("models", {}).get(model, {}), hb.get("models", {}).get(model, {})
        if ma.get("fingerprint") != mb.get("fingerprint"):
            out.append(f"model {model}: model fingerprint {ma.get('fingerprint')} -> {mb.get('fingerprint')}")
    added = sorted(set(eb) - set(ea))
    removed = sorted(set(ea) - set(eb))
    changed = []
    for key in sorted(set(ea) & set(eb)):
        parts = sorted(k for k in set(ea[key]) | set(eb[key]) if ea[key].get(k) != eb[key].get(k))
        if parts:
            changed.append((key, parts))
    summary = f"{len(changed)} changed, {len(added)} added, {len(removed)} removed (of {len(ea)} in {a}, {len(eb)} in {b})"
    rows = [f"changed  {m}  {s}  {i}  {', '.join(parts)}" for (m, s, i), parts in changed]
    rows += [f"added    {m}  {s}  {i}" for m, s, i in added]
    rows += [f"removed  {m}  {s}  {i}" for m, s, i in removed]
    by_part: dict[str, int] = {}
    for _, parts in changed:
        for p in parts:
            by_part[p] = by_part.get(p, 0) + 1
    if by_part:
        summary += "; changed components: " + ", ".join(f"{p} ({n})" for p, n in sorted(by_part.items()))
    if len(rows) > max_lines:
        rows = [*rows[:max_lines], f"... and {len(rows) - max_lines} more (--max-lines)"]
    return [summary, *out, *rows], bool(out or added or removed or changed)
