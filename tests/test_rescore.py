"""Scores are derived, not trusted: the scoring version, `harness rescore`, `report --rescore`, and the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import write_suite

from harness.cli import main
from harness.data.conventions import Conventions
from harness.data.suites import load_suite
from harness.score import version as score_version
from harness.score.version import scoring_version
from harness.types import SampleScore

REPO = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[Path, Path]:
    """A shapes-reasoner run of a small shapes suite: (run directory, suite file)."""
    suite = write_suite(tmp_path, val=3, test=2)
    out = tmp_path / "run"
    assert main(["run", "--models", "shapes-reasoner", "--suite", str(suite), "--out", str(out), *extra]) == 0
    capsys.readouterr()
    return out, suite


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())  # type: ignore[no-any-return]


def _edit_manifest(out: Path, change: Any) -> None:
    m = _manifest(out)
    change(m)
    (out / "manifest.json").write_text(json.dumps(m))


def test_the_version_is_stable_across_processes_and_follows_code_and_conventions(monkeypatch: pytest.MonkeyPatch) -> None:
    here = scoring_version(Conventions())
    code = "from harness.data.conventions import Conventions; from harness.score.version import scoring_version; " \
           "print(scoring_version(Conventions()))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    there = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()
             for _ in range(2)}
    assert there == {here} and here.startswith(f"{score_version.SCORING_REVISION}:")
    # Any convention changes it, a numeric one included.
    changed = {scoring_version(Conventions().replace(**{k: v})) for k, v in
               [("empty_union", "zero"), ("failure", "as_empty"), ("ignore", "foreground"), ("gt_overlap", "binarise"),
                ("giou_eps", 0.0), ("precision_over", "targeted")]}
    assert len(changed) == 6 and here not in changed
    # So does scoring code that scores differently (the probe sees it), and a hand-bumped revision.
    real = score_version.score_sample

    def off_by_one(pred: Any, gt: Any, conv: Conventions, no_target: bool = False) -> SampleScore:
        s = real(pred, gt, conv, no_target)
        return SampleScore(**{**s.to_json(), "union": s.union + 1})

    score_version.scoring_version.cache_clear()
    monkeypatch.setattr(score_version, "score_sample", off_by_one)
    assert scoring_version(Conventions()) != here
    monkeypatch.setattr(score_version, "score_sample", real)
    monkeypatch.setattr(score_version, "SCORING_REVISION", score_version.SCORING_REVISION + 1)
    score_version.scoring_version.cache_clear()
    assert scoring_version(Conventions()) not in (here, *changed)
    monkeypatch.undo()
    score_version.scoring_version.cache_clear()
    assert scoring_version(Conventions()) == here


def test_a_run_records_its_scoring_version_per_log_and_in_results(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, suite = _run(isolated, capsys)
    current = scoring_version(load_suite(str(suite)).conventions)
    assert _manifest(out)["scoring_versions"] == {"shapes-reasoner/val.jsonl": current, "shapes-reasoner/test.jsonl": current}
    assert json.loads((out / "results.json").read_text())["scoring_version"] == current
    # Sharded: each rank's log is recorded, and the merged log replaces them.
    for rank in ("0/2", "1/2"):
        assert main(["run", "--models", "shapes-reasoner", "--suite", str(suite), "--splits", "val", "--out",
                     str(isolated / "sharded"), "--shard", rank, "--no-report"]) == 0
    assert _manifest(isolated / "sharded")["scoring_versions"] == {"shapes-reasoner/val.jsonl": current}


def test_report_rescore_finds_a_hand_edited_score_by_its_sample_id_and_fixes_it(isolated: Path,
                                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _run(isolated, capsys)
    log = out / "shapes-reasoner" / "val.jsonl"
    original, results = log.read_text(), json.loads((out / "results.json").read_text())["results"]
    lines = original.splitlines(keepends=True)
    rec = json.loads(lines[2])
    assert rec["score"]["iou"] > 0.9
    rec["score"]["iou"], rec["score"]["intersection"] = 0.25, rec["score"]["intersection"] // 4
    lines[2] = json.dumps(rec, separators=(",", ":")) + "\n"
    log.write_text("".join(lines))
    # Plain `report` checks every stored line it loads: the edit is found, named, and nothing is written.
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err  # the edit breaks U = P + G - I: refused on loading, before any derivation
    assert f"{log}:3: the stored score of {rec['id']!r} breaks 'union = pred_area + gt_area - intersection'" in err

    assert main(["report", "--rescore", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    n = sum(len(p.read_text().splitlines()) for p in out.glob("shapes-reasoner/*.jsonl"))
    assert f"rescored {n} samples in 2 logs (scoring version {scoring_version(Conventions())})" in stdout
    assert f"1 stored score disagreed with the mask and was replaced: {rec['id']}" in stdout
    assert f"{log} record 3, sample {rec['id']}: intersection" in stderr and "iou 0.25 -> " in stderr
    assert "report:" in stdout
    assert log.read_text() == original  # every score derived again, byte for byte what the run wrote
    assert json.loads((out / "results.json").read_text())["results"] == results
    # Nothing disagrees any more; an unchanged log is not rewritten.
    before = log.stat().st_mtime_ns
    assert main(["rescore", str(out)]) == 0
    assert "every stored score matches its mask" in capsys.readouterr().out
    assert log.stat().st_mtime_ns == before


def test_report_merge_and_gate_refuse_another_scoring_version_until_rescored(isolated: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out, suite = _run(isolated, capsys)
    assert main(["baseline", "save", str(out), "--to", str(isolated / "base.json")]) == 0
    _edit_manifest(out, lambda m: m["scoring_versions"].update({"shapes-reasoner/val.jsonl": "0:0123456789ab"}))
    hint = f"Run `harness rescore {out}`"
    for argv in (["report", str(out)], ["merge", str(out)], ["gate", str(out), "--baseline", str(isolated / "base.json")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "shapes-reasoner/val.jsonl scored under version 0:0123456789ab" in err and hint in err, argv
        assert "test.jsonl" not in err  # only the stale log is named
    # `harness run` refuses to append to it before predicting anything.
    assert main(["run", "--models", "shapes-reasoner", "--suite", str(suite), "--out", str(out)]) == 2
    assert hint in capsys.readouterr().err

    assert main(["rescore", str(out)]) == 0
    assert "every stored score matches its mask" in capsys.readouterr().out
    assert _manifest(out)["scoring_versions"]["shapes-reasoner/val.jsonl"] == scoring_version(Conventions())
    assert main(["report", str(out)]) == 0
    assert main(["merge", str(out)]) == 0
    assert main(["gate", str(out), "--baseline", str(isolated / "base.json")]) == 0
    # A baseline file cannot be rescored: one saved under another version is gated, with a note saying so.
    base = json.loads((isolated / "base.json").read_text())
    assert base["from_run"]["scoring_version"] == scoring_version(Conventions())
    base["from_run"]["scoring_version"] = "0:0123456789ab"
    (isolated / "base.json").write_text(json.dumps(base))
    capsys.readouterr()
    assert main(["gate", str(out), "--baseline", str(isolated / "base.json")]) == 0
    assert "the baseline was scored under scoring version 0:0123456789ab" in capsys.readouterr().out


def test_a_run_from_before_scoring_versions_is_refused_as_unknown(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, suite = _run(isolated, capsys)
    _edit_manifest(out, lambda m: m.pop("scoring_versions"))
    doc = json.loads((out / "results.json").read_text())
    del doc["scoring_version"]
    (out / "results.json").write_text(json.dumps(doc))
    assert main(["gate", str(out), "--baseline", str(out)]) == 2
    err = capsys.readouterr().err
    assert "val.jsonl scored under an unknown version" in err and "test.jsonl scored under an unknown version" in err
    assert "results.json computed under an unknown version" in err and f"harness rescore {out}" in err
    assert main(["report", str(out)]) == 2
    assert main(["run", "--models", "shapes-reasoner", "--suite", str(suite), "--out", str(out)]) == 2
    capsys.readouterr()
    assert main(["rescore", str(out)]) == 0
    assert main(["gate", str(out), "--baseline", str(out)]) == 0
    assert main(["run", "--models", "shapes-reasoner", "--suite", str(suite), "--out", str(out)]) == 0


def test_a_damaged_stored_mask_is_an_error_naming_the_sample_and_leaves_the_log_alone(isolated: Path,
                                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _run(isolated, capsys)
    log = out / "shapes-reasoner" / "val.jsonl"
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    recs[0]["score"]["iou"] = 0.5  # would be replaced...
    recs[4]["prediction"]["mask"]["size"] = [7, 7]  # ...but a later mask is damaged: nothing is rewritten
    damaged = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs)
    log.write_text(damaged)
    assert main(["rescore", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{log} record 5 ({recs[4]['id']})" in err and "does not match the image size" in err
    assert log.read_text() == damaged
    assert not list(log.parent.glob(".*.tmp"))
