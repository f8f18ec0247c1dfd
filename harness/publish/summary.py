"""What ``harness run`` prints when it ends: a compact table per model x split (and, where a
protocol left samples out, "not drawn: k"), and the failures.

Read from results.json and the logs (through harness/records/reader.py) only, so a resumed or merged
run says the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.publish.standing import partial_text
from harness.records.reader import StoredRun

_MAX_LISTED = 3


def _num(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def summary_table(doc: Mapping[str, Any], limit: int | None = None) -> str:
    """cIoU, gIoU (and cgF1 for a suite scored on instances), n, failed and partial per model x split, aligned
    for a terminal. ``limit`` is the run's ``--limit``: such a run covers only the first samples of each split,
    so every row is partial."""
    results = doc.get("results", {})
    metrics = [("ciou", "cIoU"), ("giou", "gIoU")]
    if any("cgf1" in res for by_split in results.values() for res in by_split.values()):
        metrics.insert(0, ("cgf1", "cgF1"))
    rows = [("model", "split", *(label for _, label in metrics), "n", "failed", "partial")]
    for model, by_split in results.items():
        for split, res in by_split.items():
            # "40 of 160": predicted of the whole split, the phrasing of the report and the leaderboard.
            partial = partial_text(res).removeprefix("partial: ")
            if limit:
                partial = ", ".join(p for p in (partial, f"--limit {limit}") if p)
            rows.append((model, split, *(_num(res.get(key)) for key, _ in metrics), str(res.get("n", 0)),
                         str(res.get("n_failed", 0)), partial))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    numeric = range(2, len(rows[0]) - 1)  # the metrics, n and failed
    table = "\n".join("  ".join(c.rjust(w) if k in numeric else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths))).rstrip()
                      for r in rows) + "\n"
    return table + "".join(f"{line}\n" for line in not_drawn_lines(doc))


def not_drawn_lines(doc: Mapping[str, Any]) -> list[str]:
    """One line per model x split whose protocol left samples out (GLaMM's seeded draw): they are
    neither scored nor failed, so n and failed above do not include them."""
    return [f"{model}/{split}: not drawn: {res['n_not_drawn']} of {res.get('n_records')} samples (left out by the model's "
            "protocol; not in n, not failed)"
            for model, by_split in doc.get("results", {}).items() for split, res in by_split.items() if res.get("n_not_drawn")]


def failed_samples(run: StoredRun, doc: Mapping[str, Any]) -> list[str]:
    """One line per model x split with failed samples: the count and the first ids with their reasons."""
    lines = []
    for model, by_split in doc.get("results", {}).items():
        for split, res in by_split.items():
            n_failed = int(res.get("n_failed") or 0)
            if not n_failed:
                continue
            # the score index holds each id's last line (the one that counts) and its error
            by_id = {i: e.error or "no mask" for i, e in run.entries(model, split).items() if e.failed}
            shown = "; ".join(f"{i}: {why}" for i, why in list(by_id.items())[:_MAX_LISTED])
            more = f" and {n_failed - _MAX_LISTED} more" if n_failed > _MAX_LISTED else ""
            lines.append(f"{model}/{split}: {n_failed} of {res.get('n_records')} samples failed ({shown}{more})")
    return lines
