"""Spot re-derivation: a seeded sample of stored scores scored again from their masks.

A stored score is never more trusted than the mask it came from. Before a verdict (``gate``,
``leaderboard``, ``report``), ``n`` lines per model x split (default 256, ``--verify N|all|none``)
are drawn with a fixed seed from the lines that count (the last per id), read by offset, and scored
again from their stored prediction and the split's ground truth by the running scoring code. A
line whose score differs, in the log or in its score index, is refused with its file:line, the
fields that differ and the fix (``harness rescore RUN``). Where the data cannot be read, nothing is
re-derived and the command says so once ("scores not re-derived: data not found").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import masks
from harness.data.conventions import Conventions
from harness.records.invariants import UntrustedRunError, line_number
from harness.records.score_index import SCORE_FIELDS
from harness.records.store import StoreError
from harness.score.scoring import score_sample
from harness.types import Prediction, Sample, validate_instances

if TYPE_CHECKING:
    from harness.records.reader import StoredRun

SEED = 0


def derive_score(where: str, rec: Mapping[str, Any], samples: Mapping[str, Sample], conv: Conventions) -> dict[str, Any]:
    """The score of one stored record, derived from its prediction and its sample's ground truth
    (``where`` names the record in errors). The one derivation of ``rescore`` and of the spot check."""
    sid = str(rec.get("id"))
    sample = samples.get(sid)
    if sample is None:
        raise StoreError(f"{where}: sample id {sid!r} is not a sample of this split; its score cannot be derived")
    try:
        pred = Prediction.from_json(rec["prediction"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{where} ({sid}): no usable stored prediction ({exc})") from exc
    gt = sample.gt
    if pred.mask is not None:  # the runner stored only checked masks; a damaged one must not reach pycocotools
        pred = replace(pred, mask=masks.validate(pred.mask, gt.height, gt.width, f"{where} ({sid})"))
    if pred.instances is not None:
        pred = replace(pred, instances=validate_instances(pred.instances, gt.height, gt.width, f"{where} ({sid})"))
    return score_sample(pred, gt, conv, sample.no_target).to_json()


def rederive(run: StoredRun, n: int | None) -> str:
    """Re-derive up to ``n`` lines per model x split (all with None); the line that says what was done."""
    samples, why = run.samples_or_none()
    if samples is None:
        return f"scores not re-derived: data not found ({why})"
    conv = run.conventions
    checked = total = 0
    for model, split in run.asked():
        by_id = {s.id: s for s in samples.get(split, [])}
        entries = run.entries(model, split)
        ids = sorted(i for i in entries if i in by_id)
        total += len(ids)
        if n is not None and n < len(ids):
            picked = np.random.default_rng(SEED).choice(len(ids), size=n, replace=False)
            ids = [ids[k] for k in sorted(picked)]
        chosen = sorted((entries[i] for i in ids), key=lambda e: e.offset)
        path = run.log_path(model, split)
        for entry, rec in zip(chosen, run.index(model, split).read(chosen)):
            derived = derive_score(f"{path}", rec, by_id, conv)
            found = rec.get("score")
            stored: dict[str, Any] = found if isinstance(found, dict) else {}
            indexed = dict(zip(SCORE_FIELDS, entry.row)) if entry.row is not None else {}
            if entry.instances is not None:
                indexed["instances"] = entry.instances
            differs = {k: (stored.get(k), v) for k, v in derived.items() if stored.get(k) != v}
            differs.update({f"{k} (score index)": (indexed.get(k), v) for k, v in derived.items() if indexed.get(k) != v})
            if differs:
                raise _mismatch(run.root, path, entry.offset, entry.id, differs)
            checked += 1
    if n == 0 or not total:
        return "scores not re-derived (--verify 0)" if n == 0 else "scores re-derived: none stored"
    return f"scores re-derived from their masks: {checked} of {total} stored lines, none differs"


def _mismatch(root: Path, path: Path, offset: int, sid: str, differs: Mapping[str, tuple[Any, Any]]) -> UntrustedRunError:
    shown = ", ".join(f"{k} stored {old!r}, derived {new!r}" for k, (old, new) in list(differs.items())[:4])
    return UntrustedRunError(
        f"{path}:{line_number(path, offset)}: the stored score of {sid!r} is not what its mask scores ({shown}). "
        f"Run `harness rescore {root}` to derive every score again from its mask")
