"""cgF1, pmF1 and IL_MCC in paired comparisons (harness/score/paired.py): the bootstrap over image–phrase pairs that
`harness compare` and `harness gate` use on a suite scored on instances, checked on a case worked out by hand and
against the numbers results.json holds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_saco import predictions, write_saco

from harness.cli import main
from harness.records.reader import StoredRun
from harness.run.config import build_config
from harness.run.runner import run
from harness.score.paired import PairScores, deviations, point

K = 10  # IoU thresholds 0.50:0.05:0.95


def _with(matches: list[dict[str, Any] | None]) -> PairScores:
    from harness.score import cgf1

    n = len(matches)
    return PairScores(tuple(f"p{k}" for k in range(n)), np.zeros(n), np.ones(n), np.zeros(n), np.ones(n, bool), cgf1.counts(matches))


def _m(n_dt: int, n_gt: int, tp: int) -> dict[str, Any]:
    return {"n_dt": n_dt, "n_gt": n_gt, "annotator": 0, "tp": [tp] * K}


def _cgf1(tp: float, fp: float, fn: float, il: tuple[float, float, float, float]) -> float:
    """SA-Co's arithmetic written out: pmF1 with each denominator + 1e-4, IL_MCC with + 1e-6, x 100."""
    p, r = tp / (tp + fp + 1e-4), tp / (tp + fn + 1e-4)
    f1 = 2 * p * r / (p + r + 1e-4)
    itp, itn, ifp, ifn = il
    mcc = (itp * itn - ifp * ifn) / (math.sqrt((itp + ifp) * (itp + ifn) * (itn + ifp) * (itn + ifn)) + 1e-6)
    return 100 * f1 * mcc


def test_paired_cgf1_on_pairs_worked_out_by_hand() -> None:
    """Pairs: A a found instance (positive), B nothing on a negative (true negative), C a false positive on a negative
    for X / nothing for Y. X: IL TP 1, TN 1, FP 1 -> MCC 1/2, pmF1 ~1, cgF1 ~50; Y: IL TP 1, TN 2 -> MCC 1, cgF1 ~100.
    Resamples (A, A, A) and (B, C, C) have no image-level negative or no positive, so both sides score 0: each
    resampled difference is 0, i.e. the full difference's distance from 0."""
    x = _with([_m(1, 1, 1), _m(0, 0, 0), _m(1, 0, 0)])
    y = _with([_m(1, 1, 1), _m(0, 0, 0), _m(0, 0, 0)])
    want_x, want_y = _cgf1(1, 0, 0, (1, 1, 1, 0)), _cgf1(1, 0, 0, (1, 2, 0, 0))
    assert point(x, "cgf1", 1e-10) == pytest.approx(want_x, abs=1e-9) and want_x == pytest.approx(50.0, abs=0.01)
    assert point(y, "cgf1", 1e-10) == pytest.approx(want_y, abs=1e-9) and want_y == pytest.approx(100.0, abs=0.02)
    assert point(x, "il_mcc", 1e-10) == pytest.approx(100 * 1 / (2 + 1e-6), abs=1e-9)  # x100: in points like the rest
    center, dev = deviations(x, y, "cgf1", idx=np.array([[0, 0, 0], [1, 2, 2]]))
    assert center == pytest.approx(want_x - want_y, abs=1e-9)
    assert dev.tolist() == pytest.approx([want_y - want_x] * 2, abs=1e-9)
    with pytest.raises(ValueError, match="needs the samples' instance matches"):
        point(PairScores(("a",), np.zeros(1), np.ones(1), np.zeros(1), np.ones(1, bool)), "cgf1", 1e-10)


def test_instance_matches_survive_a_baseline_file_and_a_subset() -> None:
    x = _with([_m(2, 1, 1), None, _m(0, 0, 0)])
    back = PairScores.from_json(json.loads(json.dumps(x.to_json())))
    assert back.instances is not None and x.instances is not None and (back.instances == x.instances).all()
    assert json.loads(json.dumps(x.to_json()))["instances"][1] is None  # a pair not scored on instances
    part = x.take(np.array([0, 2]), ["p0", "p2"])
    assert part.instances is not None and part.instances.tolist() == [x.instances[0].tolist(), x.instances[2].tolist()]
    with pytest.raises(ValueError, match="one row of 12 counts"):
        PairScores.from_json({**x.to_json(), "instances": [[1, 2], None, None]})


def test_compare_and_gate_on_an_instance_suite_use_its_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs on generated SA-Co data: `compare` reports cgF1, pmF1 and IL_MCC x100 with the values results.json
    holds, and the gate bootstraps cgF1 over the pairs (an interval beside it)."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    data = write_saco(tmp_path / "data")
    runs = []
    for name, seed in (("a", 1), ("b", 2)):
        (tmp_path / name).mkdir()
        replay = tmp_path / name / "m.jsonl"  # one model name in both runs
        replay.write_text("".join(json.dumps({"id": k, **v}) + "\n" for k, v in predictions(data, seed=seed, leave_out=0).items()))
        runs.append(run(build_config(models=f"replay:{replay}", suite=str(data.suite), data_root=data.root,
                                     out=tmp_path / f"run-{name}"), render=False).run_dir)
    docs = [json.loads((r / "results.json").read_text())["results"]["replay-m"]["crowded"] for r in runs]
    scores = [StoredRun(r).pair_scores("replay-m", "crowded") for r in runs]
    for doc, sc in zip(docs, scores):
        assert point(sc, "cgf1", 1e-10) == pytest.approx(doc["cgf1"], abs=1e-9)
        assert point(sc, "pmf1", 1e-10) == pytest.approx(doc["pmf1"], abs=1e-9)
        assert point(sc, "il_mcc", 1e-10) == pytest.approx(100 * doc["il_mcc"], abs=1e-9)
    capsys.readouterr()
    assert main(["compare", str(runs[0]), str(runs[1]), "--no-slices", "--verify", "none"]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if "crowded" in line and "cgF1" in line)
    assert f"{docs[0]['cgf1']:.2f}" in row and f"{docs[1]['cgf1']:.2f}" in row and f"{docs[1]['cgf1'] - docs[0]['cgf1']:+.2f}" in row
    assert "cIoU" not in table and "IL_MCC x100" in table
    main(["gate", str(runs[1]), "--baseline", str(runs[0]), "--metric", "cgf1", "--verify", "none"])
    row = next(line for line in capsys.readouterr().out.splitlines() if "crowded" in line and "cgF1" in line)
    assert "[" in row and "tolerance only" not in row


def test_the_leaderboard_of_an_instance_suite_leads_with_its_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SA-Co run's benchmark page: cgF1, pmF1 and IL_MCC before cIoU, IL_MCC printed as the coefficient it is."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    data = write_saco(tmp_path / "data")
    replay = tmp_path / "m.jsonl"
    replay.write_text("".join(json.dumps({"id": k, **v}) + "\n" for k, v in predictions(data, leave_out=0).items()))
    out = run(build_config(models=f"replay:{replay}", suite=str(data.suite), data_root=data.root, out=tmp_path / "run"),
              render=False).run_dir
    res = json.loads((out / "results.json").read_text())["results"]["replay-m"]["crowded"]
    assert main(["leaderboard", str(out), "--out", str(tmp_path / "site")]) == 0
    page = next((tmp_path / "site").glob("bench-*.html")).read_text()
    assert page.index("cgF1") < page.index("IL_MCC") < page.index("cIoU")
    assert f">{res['il_mcc']:.2f}<" in page.replace(" ", "") or f"{res['il_mcc']:.2f}" in page
    assert f"{res['cgf1']:.1f}" in page


def test_the_report_of_an_instance_suite_heads_with_cgf1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two models on SA-Co data in one run: the report's headline ranks them by cgF1 (then pmF1, IL_MCC x100), and its
    margin is the difference of the cgF1 values results.json holds."""
    import html
    import re

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    data = write_saco(tmp_path / "data")
    specs = []
    for name, seed in (("m1", 1), ("m2", 2)):
        replay = tmp_path / f"{name}.jsonl"
        replay.write_text("".join(json.dumps({"id": k, **v}) + "\n" for k, v in predictions(data, seed=seed, leave_out=0).items()))
        specs.append(f"replay:{replay}")
    out = run(build_config(models=",".join(specs), suite=str(data.suite), data_root=data.root, out=tmp_path / "run"),
              render=True).run_dir
    res = json.loads((out / "results.json").read_text())["results"]
    a, b = (res[m]["crowded"]["cgf1"] for m in ("replay-m1", "replay-m2"))
    page = (out / "report" / "index.html").read_text()
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page[page.index('id="headline"'):])))
    crowded = text[text.index("crowded"):]
    first = crowded[:crowded.index("pmF1")]
    assert "cgF1" in first and f"by {abs(a - b):+.1f}" in first  # best minus runner-up
