"""The shared paired bootstrap against every resample of small cases worked out by hand."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from harness.score.paired import deviations, p_value


@dataclass(frozen=True)
class S:
    ids: tuple[str, ...]
    inter: np.ndarray
    union: np.ndarray
    iou: np.ndarray
    in_ciou: np.ndarray
    instances: np.ndarray | None = None


def scores(inter: list[float], union: list[float], iou: list[float]) -> S:
    n = len(inter)
    return S(tuple(f"s{i}" for i in range(n)), np.array(inter, float), np.array(union, float), np.array(iou, float),
             np.ones(n, bool))


def every_resample(n: int) -> np.ndarray:
    return np.array(list(itertools.product(range(n), repeat=n)))


def test_ciou_difference_over_all_four_resamples_of_two_samples() -> None:
    # run: A 1/2, B 3/4; base: A 1/4, B 1/4. Resamples AA, AB, BA, BB:
    # run cIoU 50, 66.67, 66.67, 75; base 25 always; delta 25, 41.67, 41.67, 50; full delta 41.67.
    run = scores([1, 3], [2, 4], [0.5, 0.75])
    base = scores([1, 1], [4, 4], [0.25, 0.25])
    center, dev = deviations(run, base, "ciou", eps=0.0, idx=every_resample(2))
    assert center == pytest.approx(100 * 4 / 6 - 25)
    assert sorted(dev) == pytest.approx([-50 / 3, 0.0, 0.0, 25 / 3])
    assert p_value(center, dev) == 0.0  # no resampled delta (25, 41.67, 41.67, 50) is at or below 0


def test_giou_difference_over_all_27_resamples_of_three_samples() -> None:
    # Per-sample IoU differences 0, 0, 0.3: a resample's delta is 10·k where k ~ Binomial(3, 1/3)
    # counts draws of the third sample; the full delta is 10, so deviations are 10·(k-1):
    # -10 (8/27), 0 (12/27), +10 (6/27), +20 (1/27); the deltas 10·k are 0 in 8 of 27 (k = 0), so
    # p = twice the smaller share on either side of 0 = 16/27.
    run = scores([1, 1, 1], [1, 1, 1], [0.5, 0.5, 0.8])
    base = scores([1, 1, 1], [1, 1, 1], [0.5, 0.5, 0.5])
    center, dev = deviations(run, base, "giou", idx=every_resample(3))
    assert center == pytest.approx(10.0)
    counts = {v: int(np.isclose(dev, v).sum()) for v in (-10.0, 0.0, 10.0, 20.0)}
    assert counts == {-10.0: 8, 0.0: 12, 10.0: 6, 20.0: 1}
    assert p_value(center, dev) == pytest.approx(16 / 27)


def test_ids_must_align() -> None:
    a = scores([1], [1], [1.0])
    b = S(("other",), a.inter, a.union, a.iou, a.in_ciou)
    with pytest.raises(ValueError, match="same sample ids"):
        deviations(a, b, "ciou")


def test_groups_are_resampled_with_the_whole_split() -> None:
    from harness.score.paired import deviations_by_group, deviations_by_metric

    rng = np.random.default_rng(3)
    n = 40
    union = rng.integers(1, 50, n).astype(float)
    inter_a, inter_b = np.floor(union * rng.random(n)), np.floor(union * rng.random(n))
    a = S(tuple(f"s{i:02d}" for i in range(n)), inter_a, union, inter_a / (union + 1e-5), np.ones(n, bool))
    b = S(a.ids, inter_b, union, inter_b / (union + 1e-5), np.ones(n, bool))
    whole = np.ones(n, bool)
    first = np.arange(n) < 5
    got = deviations_by_group(b, a, [whole, first], ("ciou", "giou"), rounds=300)
    ref = deviations_by_metric(b, a, ("ciou", "giou"), rounds=300)
    for m in ("ciou", "giou"):  # the whole group is exactly the ungrouped bootstrap
        assert got[0][m][0] == ref[m][0] and np.allclose(got[0][m][1], ref[m][1], atol=1e-9)
    # Direct: the same draws; the group's metric on the drawn samples that fall in it.
    draws = np.random.default_rng(0).integers(0, n, size=(300, n))
    center = 100 * (inter_b[first].sum() / union[first].sum() - inter_a[first].sum() / union[first].sum())
    direct = []
    for row in draws:
        kept = row[first[row]]
        if kept.size:
            direct.append(100 * (inter_b[kept].sum() / (union[kept].sum() + 1e-10) - inter_a[kept].sum() / (union[kept].sum() + 1e-10)))
    assert got[1]["ciou"][0] == pytest.approx(center)
    assert np.allclose(got[1]["ciou"][1], np.array(direct) - got[1]["ciou"][0], atol=1e-9)


def test_groups_multiplied_in_blocks_give_what_one_block_gives() -> None:
    """At 40k samples 14 groups' tables exceed one block (they are rebuilt per chunk of draws); one group fits in
    one (built once). The draws do not depend on the groups, so each group's deviations must not either."""
    from harness.score.paired import deviations_by_group

    rng = np.random.default_rng(5)
    n = 40_000
    union = rng.integers(1, 5000, n).astype(float)
    inter_a, inter_b = np.floor(union * rng.random(n)), np.floor(union * rng.random(n))
    a = S(tuple(f"s{i:05d}" for i in range(n)), inter_a, union, inter_a / (union + 1e-5), rng.random(n) < 0.9)
    b = S(a.ids, inter_b, union, inter_b / (union + 1e-5), np.ones(n, bool))
    groups = [rng.random(n) < p for p in np.linspace(0.02, 0.9, 14)]
    together = deviations_by_group(b, a, groups, ("ciou", "giou"), rounds=60)
    apart = [deviations_by_group(b, a, [g], ("ciou", "giou"), rounds=60)[0] for g in groups]
    for got, want in zip(together, apart):
        for m in ("ciou", "giou"):
            assert got[m][0] == want[m][0]
            # the same products summed; a threaded BLAS may split a wider product's sums differently
            np.testing.assert_allclose(got[m][1], want[m][1], rtol=0, atol=1e-9)
