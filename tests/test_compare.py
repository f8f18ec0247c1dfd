"""harness compare: the paired bootstrap against a direct computation, pairing by id, slices, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_suite
from helper_paired import paired_difference

from harness.cli import main
from harness.score.paired import PairScores


def pair(ids: list[str], inter: list[int], union: list[int]) -> PairScores:
    i, u = np.array(inter, float), np.array(union, float)
    iou = np.where(u > 0, i / (u + 1e-5), 1.0)
    return PairScores(tuple(ids), i, u, iou, np.ones(len(ids), bool))


def test_paired_bootstrap_against_a_direct_computation() -> None:
    ids = [f"s{k}" for k in range(6)]
    a = pair(ids, [10, 0, 30, 5, 8, 0], [20, 10, 40, 10, 8, 0])
    b = pair(ids, [15, 5, 20, 5, 8, 0], [20, 10, 45, 12, 9, 0])
    rounds = 200
    # Direct: the same draws (numpy's default_rng(0), one block of rounds x n), loops over plain sums.
    draws = np.random.default_rng(0).integers(0, 6, size=(rounds, 6))

    def ciou(p: PairScores, rows: list[int]) -> float:
        return 100 * sum(p.inter[k] for k in rows) / (sum(p.union[k] for k in rows) + 1e-10)

    def giou(p: PairScores, rows: list[int]) -> float:
        return 100 * sum(p.iou[k] for k in rows) / len(rows)

    for metric, f in (("ciou", ciou), ("giou", giou)):
        full = list(range(6))
        delta = f(b, full) - f(a, full)
        deltas = np.array([f(b, list(r)) - f(a, list(r)) for r in draws])
        lo, hi = np.percentile(deltas, [2.5, 97.5])
        p_direct = min(1.0, 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0)))  # the interval's inversion
        va, vb, d, ci, p = paired_difference(a, b, metric, 1e-10, rounds)
        assert (va, vb, d) == pytest.approx((f(a, full), f(b, full), delta))
        assert ci == pytest.approx((lo, hi))
        assert p == pytest.approx(p_direct)
    # By hand: cIoU a = 53/88 = 60.23, b = 53/96 = 55.21, so b - a = -5.02 points.
    assert paired_difference(a, b, "ciou", 1e-10, 10)[2] == pytest.approx(100 * (53 / 96 - 53 / 88))


def test_identical_models_differ_by_exactly_nothing() -> None:
    ids = ["x", "y", "z"]
    a = pair(ids, [1, 2, 3], [4, 4, 4])
    assert paired_difference(a, a, "giou", 1e-10, 100)[2:] == (0.0, (0.0, 0.0), 1.0)


@pytest.fixture
def runs(isolated: Path) -> Path:
    suite = write_suite(isolated, val=5, test=3)
    assert main(["run", "--models", "shapes-reasoner,oracle-box,empty", "--suite", str(suite), "--out", "a", "--no-report"]) == 0
    return isolated


def test_cli_and_api_give_the_same_rows(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import harness

    capsys.readouterr()
    assert main(["compare", "a", "--models", "shapes-reasoner,oracle-box", "--markdown"]) == 0
    md = capsys.readouterr().out
    frame = harness.load_run(runs / "a").compare(models=["shapes-reasoner", "oracle-box"])
    doc = json.loads((runs / "a" / "results.json").read_text())
    whole = frame[(frame.family == "all") & (frame.split == "val") & (frame.metric == "ciou")].iloc[0]
    res = doc["results"]
    assert whole.a == "shapes-reasoner" and whole.b == "oracle-box"
    assert whole.delta == pytest.approx(res["oracle-box"]["val"]["ciou"] - res["shapes-reasoner"]["val"]["ciou"])
    assert whole.n == res["oracle-box"]["val"]["n"]
    assert whole.ci_lo <= whole.delta <= whole.ci_hi
    row = f"| shapes-reasoner | oracle-box | val | (all) | cIoU | {whole.a_value:.2f} | {whole.b_value:.2f} | {whole.delta:+.2f} | " \
          f"[{whole.ci_lo:+.2f}, {whole.ci_hi:+.2f}] | {whole.p:.3f} | {whole.n} |"
    assert row in md
    # slice rows: the same values as results.json's slices; too-small slices have no interval
    sl = frame[frame.family == "target"]
    assert set(sl.slice) == {"targeted", "no target"}
    min_n = doc["slices"]["definitions"]["min_n"]
    for r in frame[frame.family != "all"].itertuples():
        ref = doc["slices"]["results"][r.a][r.split][r.family][r.slice]
        assert r.a_value == pytest.approx(ref[r.metric]) and r.n == ref["n"]
        assert (r.ci_lo is None or np.isnan(r.ci_lo)) == (r.n < min_n)
    # every pair of the three models when none is chosen
    assert set(map(tuple, harness.load_run(runs / "a").compare(with_slices=False)[["a", "b"]].values)) == {
        ("shapes-reasoner", "oracle-box"), ("shapes-reasoner", "empty"), ("oracle-box", "empty")}


def test_across_runs_pairs_by_id(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = runs / "mini.yaml"
    assert main(["run", "--models", "full", "--suite", str(suite), "--splits", "val", "--out", "b", "--no-report", "--limit", "12"]) == 0
    capsys.readouterr()
    assert main(["compare", "a", "b", "--models", "a:shapes-reasoner,b:full", "--no-slices"]) == 0
    out = capsys.readouterr().out
    assert "a:shapes-reasoner  b:full" in out and "compared on the 12 shared ids" in out


def test_other_conventions_are_refused_with_exit_2(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = write_suite(runs / "x", val=5, test=3, empty_union="zero") if (runs / "x").mkdir() is None else None
    assert other is not None
    assert main(["run", "--models", "empty", "--suite", str(other), "--out", "c", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["compare", "a", "c"]) == 2
    err = capsys.readouterr().err
    assert "not comparable" in err and "fingerprint differs" in err and "empty_union" in err


def test_unknown_model_is_named(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "a", "--models", "nope,empty"]) == 2
    assert "unknown model 'nope' (valid: shapes-reasoner, oracle-box, empty)" in capsys.readouterr().err
