"""One metric's paired difference between two models' aligned scores, as ``harness compare`` computes
a whole split's row (harness.publish.compare.pair_rows): what the tests check against direct computations."""

from __future__ import annotations

from harness.publish.compare import Comparison, pair_rows
from harness.score.paired import PairScores

Outcome = tuple[float, float, float, tuple[float, float] | None, float | None]


def paired_difference(a: PairScores, b: PairScores, metric: str, eps: float, rounds: int) -> Outcome:
    """(a value, b value, b - a, 95% interval of b - a or None, p-value or None) over the ids both have."""
    out = Comparison(rounds=rounds)
    pair_rows("a", a, "b", b, "split", {}, eps, 2, rounds, (metric,), out)
    (row,) = out.rows  # no slices given: the whole split's row only
    ci = (row.ci_lo, row.ci_hi) if row.ci_lo is not None and row.ci_hi is not None else None
    return row.a_value, row.b_value, row.delta, ci, row.p
