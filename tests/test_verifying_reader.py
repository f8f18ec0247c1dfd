"""One reader of a stored run, and it verifies: forged aggregates and forged scores are refused by every
command that reads a run, stored scores obey their invariants, a killed run always resumes, and a copy
of a dataset short of its official counts is not a complete result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import results_of, write_suite
from helper_datasets import shape, write_labelme

import harness
from harness.cli import main
from harness.records.invariants import BrokenScoreError, UntrustedRunError
from harness.records.store import read_records
from harness.records.versions import ScoringVersionError

MODELS = "shapes-reasoner,oracle-box"


def _run(suite: Path, out: Path, *extra: str, models: str = MODELS) -> int:
    return main(["run", "--suite", str(suite), "--models", models, "--out", str(out), *extra])


@pytest.fixture()
def pair(tmp_path: Path, isolated: Path) -> dict[str, Path]:
    """A finished run and a copy of it as its baseline."""
    suite = write_suite(tmp_path, val=6, test=4)
    out = tmp_path / "run"
    assert _run(suite, out, "--no-report") == 0
    base = tmp_path / "base"
    shutil.copytree(out, base)
    return {"suite": suite, "run": out, "base": base, "tmp": tmp_path}


def _refused_everywhere(run: Path, base: Path, tmp: Path, capsys: pytest.CaptureFixture[str], names: str) -> None:
    """gate, leaderboard, table, compare and load_run each refuse the run, naming ``names``."""
    capsys.readouterr()
    assert main(["gate", str(run), "--baseline", str(base)]) == 2
    assert names in capsys.readouterr().err
    assert main(["leaderboard", str(run), "--out", str(tmp / "site")]) == 2
    assert names in capsys.readouterr().err
    layout = tmp / "layout.yaml"
    layout.write_text("tables:\n- id: t\n  title: T\n  groups:\n  - label: mini\n    suite: mini\n    columns:\n"
                      "    - {label: val, split: val}\n")
    assert main(["table", str(run), "--layout", str(layout)]) == 2
    assert names in capsys.readouterr().err
    assert main(["compare", str(run)]) == 2
    assert names in capsys.readouterr().err
    with pytest.raises(UntrustedRunError, match=names.replace(".", r"\.")):
        harness.load_run(run)


def _edit_results(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_a_forged_aggregate_is_refused_by_every_reader(pair: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", str(pair["run"]), "--baseline", str(pair["base"])]) == 0  # the honest run passes
    _edit_results(pair["run"] / "results.json", lambda d: d["results"]["shapes-reasoner"]["val"].update(ciou=99.0))
    _refused_everywhere(pair["run"], pair["base"], pair["tmp"], capsys, "results.json")
    # The writer derives it again: the forged number is gone.
    assert main(["report", str(pair["run"])]) == 0
    assert results_of(pair["run"])["shapes-reasoner"]["val"]["ciou"] == results_of(pair["base"])["shapes-reasoner"]["val"]["ciou"]
    assert main(["gate", str(pair["run"]), "--baseline", str(pair["base"])]) == 0


def test_a_forged_completeness_flag_is_refused(pair: dict[str, Path]) -> None:
    def forge(d: dict[str, Any]) -> None:
        d["results"]["oracle-box"]["test"].update(complete=False, incomplete=["missing"])

    _edit_results(pair["run"] / "results.json", forge)
    with pytest.raises(UntrustedRunError, match="oracle-box/test complete"):
        harness.load_run(pair["run"])


def _forge_line(log: Path) -> int:
    """The worst line of a log made perfect: every invariant holds, but its mask does not score that; its line number."""
    lines = log.read_text().splitlines(keepends=True)
    k = min(range(len(lines)), key=lambda j: json.loads(lines[j])["score"]["iou"])
    rec = json.loads(lines[k])
    assert rec["score"]["iou"] < 0.99
    s = rec["score"]
    area = max(s["gt_area"], 1)  # a perfect overlap: I = U = P = G
    s.update(intersection=area, union=area, gt_area=area, pred_area=area, iou=area / (area + 1e-5), gt_empty=False,
             pred_empty=False, failed=False)
    lines[k] = json.dumps(rec, separators=(",", ":")) + "\n"
    log.write_text("".join(lines))
    return k + 1


def test_a_forged_log_score_is_refused_by_every_reader(pair: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    line = _forge_line(pair["run"] / "shapes-reasoner" / "val.jsonl")
    # results.json no longer describes the logs: every reader refuses, naming it.
    _refused_everywhere(pair["run"], pair["base"], pair["tmp"], capsys, "results.json")
    # The writer re-derives every stored line here (fewer than 256): the forged one is named with its line.
    assert main(["report", str(pair["run"])]) == 2
    err = capsys.readouterr().err
    assert f"shapes-reasoner/val.jsonl:{line}" in err and "not what its mask scores" in err and "harness rescore" in err


def test_a_forged_score_with_fresh_results_is_caught_by_re_derivation(pair: dict[str, Path],
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    line = _forge_line(pair["run"] / "shapes-reasoner" / "val.jsonl")
    assert main(["report", str(pair["run"]), "--verify", "none"]) == 0  # results.json now agrees with the forged log
    capsys.readouterr()
    assert main(["gate", str(pair["run"]), "--baseline", str(pair["base"])]) == 2
    assert f"val.jsonl:{line}" in capsys.readouterr().err
    assert main(["leaderboard", str(pair["run"]), "--out", str(pair["tmp"] / "site")]) == 2
    assert f"val.jsonl:{line}" in capsys.readouterr().err
    assert main(["compare", str(pair["run"])]) == 2
    assert f"val.jsonl:{line}" in capsys.readouterr().err
    layout = pair["tmp"] / "layout.yaml"
    layout.write_text("tables:\n- id: t\n  title: T\n  groups:\n  - label: mini\n    suite: mini\n    columns:\n"
                      "    - {label: val, split: val}\n")
    assert main(["table", str(pair["run"]), "--layout", str(layout)]) == 2
    assert f"val.jsonl:{line}" in capsys.readouterr().err
    # `harness rescore` derives it again from the mask: everything passes.
    assert main(["rescore", str(pair["run"])]) == 0
    assert main(["gate", str(pair["run"]), "--baseline", str(pair["base"])]) == 0


def test_re_derivation_says_when_the_data_is_not_found(pair: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    pair["suite"].unlink()  # the suite file (and so the data) is gone: nothing can be re-derived
    capsys.readouterr()
    assert main(["gate", str(pair["run"]), "--baseline", str(pair["base"])]) == 0
    out = capsys.readouterr().out
    assert out.count("scores not re-derived: data not found") == 2  # once per run read, never silently


@pytest.mark.parametrize(("change", "invariant"), [
    (lambda s: s.update(intersection=10**9), "intersection <= min(pred_area, gt_area)"),
    (lambda s: s.update(union=1), "union = pred_area + gt_area - intersection"),
    (lambda s: s.update(iou=1.5), "0 <= iou <= 1"),
    (lambda s: s.update(pred_area=10**7, union=10**7 + s["gt_area"] - s["intersection"]), "h*w of the mask's RLE header"),
], ids=["intersection", "union", "iou", "area"])
def test_a_line_breaking_an_invariant_is_refused_with_file_and_line(pair: dict[str, Path], change: Any, invariant: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    log = pair["run"] / "oracle-box" / "val.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    rec = json.loads(lines[2])
    change(rec["score"])
    lines[2] = json.dumps(rec) + "\n"
    log.write_text("".join(lines))
    with pytest.raises(BrokenScoreError, match=r"oracle-box/val\.jsonl:3: .*" + invariant.replace("(", r"\(").replace(")", r"\)")
                       .replace("*", r"\*").replace("+", r"\+")):
        harness.load_run(pair["run"])
    assert main(["report", str(pair["run"])]) == 2
    assert "val.jsonl:3" in capsys.readouterr().err
    assert main(["rescore", str(pair["run"])]) == 0  # the fix it names works
    assert main(["report", str(pair["run"])]) == 0


def _without_timings(path: Path) -> dict[str, Any]:
    out = {}
    for rec in read_records(path):
        rec["prediction"].pop("seconds", None)
        out[rec["id"]] = rec
    return out


def _same_logs(a: Path, b: Path) -> None:
    logs = sorted(p.relative_to(a) for p in a.glob("*/*.jsonl"))
    assert logs == sorted(p.relative_to(b) for p in b.glob("*/*.jsonl")) and logs
    for rel in logs:
        assert _without_timings(a / rel) == _without_timings(b / rel), rel


@pytest.mark.slow
def test_a_killed_run_whose_report_was_rendered_resumes_to_the_same_logs(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=12, test=8)
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "harness", "run", "--suite", str(suite), "--models", MODELS]
    subprocess.run([*args, "--out", str(tmp_path / "clean")], check=True, env=env, capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(killed), "--batch-size", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / "shapes-reasoner" / "val.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count("\n") < 5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "oracle-box").exists(), "the run was not killed during its first model"
    report = subprocess.run([sys.executable, "-m", "harness", "report", str(killed)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    partial = results_of(killed)
    assert partial["shapes-reasoner"]["val"]["complete"] is False
    # The second model, which never started, is listed: nothing of it is stored.
    assert partial["oracle-box"]["val"]["n_records"] == 0 and "missing" in partial["oracle-box"]["val"]["incomplete"]
    assert not (killed / ".finished.json").exists()
    again = subprocess.run([*args, "--out", str(killed)], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert results_of(killed) == results_of(tmp_path / "clean")
    _same_logs(killed, tmp_path / "clean")


def test_a_torn_last_line_after_a_report_is_predicted_again(tmp_path: Path, isolated: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=6, test=4)
    clean, out = tmp_path / "clean", tmp_path / "run"
    assert _run(suite, clean) == 0
    assert _run(suite, out) == 0
    log = out / "oracle-box" / "test.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]) + lines[-1][:30])  # killed while writing its last line
    assert main(["report", str(out)]) == 0
    assert results_of(out)["oracle-box"]["test"]["complete"] is False
    capsys.readouterr()
    assert _run(suite, out) == 0
    assert results_of(out) == results_of(clean)
    _same_logs(out, clean)


def test_a_run_with_samples_asked_for_and_missing_never_exits_zero(tmp_path: Path, isolated: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=3, test=2)
    out = tmp_path / "run"
    assert _run(suite, out, models="oracle-box") == 0
    # An earlier command of this run asked for a model that stored nothing (killed before its first batch).
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["asked"]["empty"] = ["val"]
    manifest["models"]["empty"] = {"adapter": "empty", "fingerprint": "x"}
    (out / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert _run(suite, out, models="oracle-box") == 4
    err = capsys.readouterr().err
    doc = results_of(out)
    assert doc["empty"]["val"]["n_records"] == 0 and doc["empty"]["val"]["complete"] is False
    assert f"missing: empty/val: 0 of {doc['empty']['val']['n_expected']} stored" in err
    assert not (out / ".finished.json").exists()
    assert _run(suite, out, models="oracle-box,empty") == 0  # asked again: predicted, and the run is finished
    assert (out / ".finished.json").exists()


def _reasonseg_with(root: Path, n: int) -> Path:
    base = root / "reason_seg" / "ReasonSeg" / "val"
    for k in range(n):
        write_labelme(base, f"img{k}", 30, 30, [shape("target", [[5, 5], [25, 5], [25, 25]])], [f"text {k}"], False, seed=k)
    return root


def test_a_copy_short_of_the_official_count_is_not_a_complete_result(tmp_path: Path, isolated: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = _reasonseg_with(tmp_path / "data", 4)
    out = tmp_path / "run"
    assert main(["run", "--suite", "reasonseg", "--splits", "val", "--models", "oracle-box", "--data-root", str(root),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    res = results_of(out)["oracle-box"]["val"]
    assert res["complete"] is False and res["incomplete"] == ["data"] and res["data"] == "4 of 200 images"
    assert "data: 4 of 200 images" in printed  # the run's summary says so
    report = (out / "report" / "index.html").read_text()
    assert "data: 4 of 200 images" in report
    # The gate treats it as partial; the leaderboard shows it, never bolded.
    assert main(["gate", str(out), "--baseline", str(out)]) == 2
    assert "data: 4 of 200 images" in capsys.readouterr().out
    assert main(["leaderboard", str(out), "--out", str(tmp_path / "site")]) == 0
    page = next((tmp_path / "site").glob("bench-*.html")).read_text()
    assert "data: 4 of 200 images" in page and "<strong>" not in page.split("oracle-box", 1)[1].split("</tr>", 1)[0]
    for fmt in ("markdown", "latex", "csv"):  # the paper table marks it and says why, in every format
        assert main(["table", str(out), "--layout", "lens-table3", "--format", fmt]) == 0
        assert "data: 4 of 200 images" in capsys.readouterr().out, fmt


def test_a_split_without_official_counts_says_count_unchecked(tmp_path: Path, isolated: Path) -> None:
    suite = write_suite(tmp_path, val=3, test=2)
    out = tmp_path / "run"
    assert _run(suite, out, models="oracle-box") == 0
    res = results_of(out)["oracle-box"]["val"]
    assert res["data"] == "count unchecked" and res["complete"] is True


def test_compare_and_load_run_refuse_scores_of_another_scoring_version(pair: dict[str, Path],
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((pair["run"] / "manifest.json").read_text())
    manifest["scoring_versions"]["oracle-box/val.jsonl"] = "1:000000000000"
    (pair["run"] / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ScoringVersionError, match=f"harness rescore {pair['run']}"):
        harness.load_run(pair["run"])
    capsys.readouterr()
    assert main(["compare", str(pair["run"])]) == 2
    assert "oracle-box/val.jsonl scored under version 1:000000000000" in capsys.readouterr().err
