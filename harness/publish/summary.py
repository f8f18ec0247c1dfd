"""What ``harness run`` prints when it ends: a compact table per model x split, and the failures.

Read from results.json and the logs only, so a resumed or merged run says the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.records.store import RunDir

_MAX_LISTED = 3


def _num(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def summary_table(doc: Mapping[str, Any], limit: int | None = None) -> str:
    """cIoU, gIoU, n, failed and partial per model x split, aligned for a terminal. ``limit`` is the
    run's ``--limit``: such a run covers only the first samples of each split, so every row is partial."""
    rows = [("model", "split", "cIoU", "gIoU", "n", "failed", "partial")]
    for model, by_split in doc.get("results", {}).items():
        for split, res in by_split.items():
            partial = "" if res.get("complete", True) else f"{res.get('n_records')} of {res.get('n_expected')}"
            if limit:
                partial = ", ".join(p for p in (f"--limit {limit}", partial) if p)
            rows.append((model, split, _num(res.get("ciou")), _num(res.get("giou")), str(res.get("n", 0)),
                         str(res.get("n_failed", 0)), partial))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if 2 <= k <= 5 else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows) + "\n"


def failed_samples(run_dir: RunDir, doc: Mapping[str, Any]) -> list[str]:
    """One line per model x split with failed samples: the count and the first ids with their reasons."""
    lines = []
    for model, by_split in doc.get("results", {}).items():
        for split, res in by_split.items():
            n_failed = int(res.get("n_failed") or 0)
            if not n_failed:
                continue
            # the score index holds each id's last line (the one that counts) and its error
            by_id = {i: e.error or "no mask" for i, e in run_dir.scores(model, split).items() if e.failed}
            shown = "; ".join(f"{i}: {why}" for i, why in list(by_id.items())[:_MAX_LISTED])
            more = f" and {n_failed - _MAX_LISTED} more" if n_failed > _MAX_LISTED else ""
            lines.append(f"{model}/{split}: {n_failed} of {res.get('n_records')} samples failed ({shown}{more})")
    return lines
