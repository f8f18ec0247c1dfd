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
    assert p_value(center, dev) == 0.0  # no deviation reaches 41.67


def test_giou_difference_over_all_27_resamples_of_three_samples() -> None:
    # Per-sample IoU differences 0, 0, 0.3: a resample's delta is 10·k where k ~ Binomial(3, 1/3)
    # counts draws of the third sample; the full delta is 10, so deviations are 10·(k-1):
    # -10 (8/27), 0 (12/27), +10 (6/27), +20 (1/27); |dev| >= 10 in 15 of 27.
    run = scores([1, 1, 1], [1, 1, 1], [0.5, 0.5, 0.8])
    base = scores([1, 1, 1], [1, 1, 1], [0.5, 0.5, 0.5])
    center, dev = deviations(run, base, "giou", idx=every_resample(3))
    assert center == pytest.approx(10.0)
    counts = {v: int(np.isclose(dev, v).sum()) for v in (-10.0, 0.0, 10.0, 20.0)}
    assert counts == {-10.0: 8, 0.0: 12, 10.0: 6, 20.0: 1}
    assert p_value(center, dev) == pytest.approx(15 / 27)


def test_ids_must_align() -> None:
    a = scores([1], [1], [1.0])
    b = S(("other",), a.inter, a.union, a.iou, a.in_ciou)
    with pytest.raises(ValueError, match="same sample ids"):
        deviations(a, b, "ciou")
