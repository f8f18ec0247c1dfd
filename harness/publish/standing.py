"""How far a number of a run can be trusted as a full result, in one phrasing for every reader.

A ``--limit`` run, a run with samples still without a prediction, a run with failed samples and a
run over a copy of the data short of the suite's official counts ("data: 4 of 200 images") are all
"not complete" in results.json (``incomplete`` says why, harness.score.schema). The run
summary, the report and the leaderboard phrase that the same way ("partial: 40 of 160",
"160 failed") and never rank such a number above a complete one. results.json files written
before ``incomplete`` existed are read too: there ``complete: false`` meant missing samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _reasons(res: Mapping[str, Any]) -> list[str]:
    if isinstance(res.get("incomplete"), list):
        return [str(r) for r in res["incomplete"]]
    old = ["missing"] if res.get("complete") is False else []
    return old + (["failed"] if int(res.get("n_failed") or 0) else [])


def missing_samples(res: Mapping[str, Any]) -> bool:
    """Samples of the (possibly --limit-cut) split have no prediction: missing ids or shards not merged."""
    return "missing" in _reasons(res)


def is_partial(res: Mapping[str, Any]) -> bool:
    """Covers less than the whole split: a --limit cut, missing samples, or a copy of the data short of
    the suite's official counts."""
    return bool({"limit", "missing", "data"} & set(_reasons(res)))


def data_text(res: Mapping[str, Any]) -> str:
    """``data: 4 of 200 images`` where the data on disk fell short of the official counts, else ""."""
    return f"data: {res.get('data')}" if "data" in _reasons(res) else ""


def is_clean(res: Mapping[str, Any]) -> bool:
    """The whole split, every sample predicted, none failed: a number that may be ranked as a result."""
    return not _reasons(res)


def partial_text(res: Mapping[str, Any]) -> str:
    """``partial: 40 of 160`` (predicted of the whole split), or "" for a number covering the whole split."""
    if not is_partial(res):
        return ""
    if not {"limit", "missing"} & set(_reasons(res)):
        return data_text(res)
    whole = res.get("n_split") or res.get("n_expected")
    text = f"partial: {int(res.get('n_records') or 0)} of {whole}" if whole is not None else "partial"
    return ", ".join(t for t in (text, data_text(res)) if t)


def failed_text(res: Mapping[str, Any]) -> str:
    """``160 failed``, or "" when no sample failed."""
    n = int(res.get("n_failed") or 0)
    return f"{n} failed" if n else ""


def standing_text(res: Mapping[str, Any]) -> str:
    """Both, e.g. ``partial: 40 of 160, 3 failed``; "" for a complete number."""
    return ", ".join(t for t in (partial_text(res), failed_text(res)) if t)
