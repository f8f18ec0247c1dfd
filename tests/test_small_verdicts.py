"""Issue 21, bullet 6: the smaller wrong verdicts, one test (or a few) per verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.records.store import read_records
from harness.run.config import build_config
from harness.run.runner import run

# --- a. a replayed reasoning model parses as it does in process -----------------------------


def test_replayed_reasoning_text_gets_the_in_process_parse_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    live = run(build_config(models="shapes-reasoner", suite="shapes", splits="val", limit=6, out=tmp_path / "live"),
               render=False).run_dir
    records = read_records(live / "shapes-reasoner" / "val.jsonl")
    replay = tmp_path / "reasoner.jsonl"
    lines = [{"id": r["id"], "mask": r["prediction"]["mask"], "box": r["prediction"]["box"], "text": r["prediction"]["text"]}
             for r in records]
    lines[0]["text"] = "<think>hmm</think><answer>not json</answer>"  # a broken answer: failed, as in process
    replay.write_text("".join(json.dumps({k: v for k, v in line.items() if v is not None}) + "\n" for line in lines))
    out = run(build_config(models=f"replay:{replay}", suite="shapes", splits="val", limit=6, out=tmp_path / "replayed"),
              render=False).run_dir
    got = {r["id"]: r["prediction"]["parse_status"] for r in read_records(out / "replay-reasoner" / "val.jsonl")}
    want = {r["id"]: r["prediction"]["parse_status"] for r in records}
    assert set(want.values()) == {"ok"}
    assert got == {**want, records[0]["id"]: "failed"}
    live_share = json.loads((live / "results.json").read_text())["reasoning"]["results"]["shapes-reasoner"]["val"]
    share = json.loads((out / "results.json").read_text())["reasoning"]["results"]["replay-reasoner"]["val"]
    assert live_share["format_ok"] == 100.0
    assert share["format_ok"] == pytest.approx(100.0 * 5 / 6) and share["n_format_ok"] == 5
    # a line's own parse_status wins; an unknown one is refused naming the file and line
    replay.write_text(json.dumps({**lines[1], "parse_status": "failed"}) + "\n" + json.dumps({**lines[2], "parse_status": "maybe"}) + "\n")
    code = main(["run", "--models", f"replay:{replay}", "--suite", "shapes", "--splits", "val", "--limit", "6",
                 "--out", str(tmp_path / "bad"), "--no-report"])
    assert code == 2


# --- b. the disagreement gallery lists only samples that disagree ----------------------------


def test_disagreement_list_holds_only_disagreeing_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.run.finish import report_run
    from harness.run.rescore import rescore_run

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    out = run(build_config(models="shapes-reasoner", suite="shapes", splits="val", limit=6, out=tmp_path / "run")).run_dir
    html = (out / "report" / "index.html").read_text()
    section = html.split('<section id="reasoning">')[1].split("</section>")[0]
    assert section.count('<p class="box-mask">') == 0 and "None: every box this model stated agrees with its mask." in section
    res = json.loads((out / "results.json").read_text())["reasoning"]["results"]["shapes-reasoner"]["val"]
    assert res["n_agree"] == res["n_box"] > 0 and res["largest_disagreements"] == []

    log = out / "shapes-reasoner" / "val.jsonl"
    recs = read_records(log)
    victim = next(r for r in recs if r["prediction"]["box"] is not None)
    victim["prediction"]["box"] = [0.0, 0.0, 1.0, 1.0]  # far from its mask: the one disagreement
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    rescore_run(out)  # the edited box changes its box IoU: derived again before the report (which would refuse it)
    html = report_run(out)[0].read_text()
    res = json.loads((out / "results.json").read_text())["reasoning"]["results"]["shapes-reasoner"]["val"]
    assert res["largest_disagreements"] == [{"id": victim["id"], "box_mask_iou": 0.0}]
    section = html.split('<section id="reasoning">')[1].split("</section>")[0]
    assert section.count('<p class="box-mask">') == 1 and "None: every box" not in section


# --- c. a merge with shards missing is not a success ------------------------------------------


def test_merge_with_a_shard_missing_exits_non_zero_naming_the_missing_count(
        isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import write_suite

    from harness.data.samples import load_samples
    from harness.data.suites import load_suite
    from harness.run.sharding import Shard

    suite = write_suite(isolated, val=5, test=1)
    out = isolated / "run"
    run(build_config(models="oracle-box", suite=str(suite), splits="val", out=out, shard="0/2"), render=False)
    samples = load_samples(load_suite(str(suite)), ["val"], None)["val"]
    n_missing = len(Shard(1, 2).take(samples))
    assert 0 < n_missing < len(samples)
    capsys.readouterr()
    assert main(["merge", str(out), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert f"{n_missing} samples still without predictions (oracle-box val: {n_missing} of {len(samples)} missing)" in err
    assert not (out / "results.json").exists()
    # once the other shard ran, the merge succeeds
    run(build_config(models="oracle-box", suite=str(suite), splits="val", out=out, shard="1/2"), render=False)
    assert (out / "results.json").exists()
    assert main(["merge", str(out), "--no-report"]) == 0


# --- d. the --limit shown is the one the stored samples were run under -----------------------


def test_limit_shown_after_a_resume_with_another_limit(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import results_of, write_suite

    suite = str(write_suite(isolated, val=3, test=1))
    args = ["--models", "oracle-box", "--suite", suite, "--splits", "val", "--no-report"]
    assert main(["run", *args, "--out", str(isolated / "full")]) == 0
    out = isolated / "run"
    assert main(["run", *args, "--limit", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", *args, "--limit", "5", "--out", str(out)]) == 0  # a resume: 3 more samples
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("oracle-box"))
    n_split = results_of(out)["oracle-box"]["val"]["n_split"]
    assert results_of(out)["oracle-box"]["val"]["n_expected"] == 5
    assert row.endswith(f"5 of {n_split}, --limit 5")
    assert json.loads((out / "manifest.json").read_text())["config"]["limit"] == 5
    # the gate says the same limit
    assert main(["gate", str(out), "--baseline", str(isolated / "full"), "--allow-partial"]) in (0, 1)
    shown = capsys.readouterr().out
    assert "--limit 5 (5 samples)" in shown and "--limit 2" not in shown
    # and `harness report` scores the samples under that limit, not the first command's
    assert main(["report", str(out)]) == 0
    assert results_of(out)["oracle-box"]["val"]["n_expected"] == 5


# --- e. the partial mark in every table format, averages included ------------------------------

_LAYOUT = """\
tables:
  - id: mini
    title: "Mini"
    suite: mini
    average: true
    groups:
      - label: val
        columns:
          - {label: cIoU, split: val, metric: ciou}
      - label: test
        columns:
          - {label: cIoU, split: test}
"""


def test_table_marks_partial_values_and_their_average_in_every_format(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    from conftest import write_suite

    suite = write_suite(isolated, val=3, test=2)
    assert main(["run", "--models", "oracle-box", "--suite", str(suite), "--out", "full", "--no-report"]) == 0
    # a second run, a --limit cut: its values, and the average over them, are partial
    assert main(["run", "--models", "empty", "--suite", str(suite), "--limit", "2", "--out", "cut", "--no-report"]) == 0
    (isolated / "layout.yaml").write_text(_LAYOUT)

    def table(fmt: str) -> str:
        capsys.readouterr()
        assert main(["table", "full", "cut", "--layout", "layout.yaml", "--format", fmt]) == 0
        return capsys.readouterr().out

    md = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table("markdown").splitlines()
          if line.startswith("| ") and not line.startswith("| model")}
    assert md["empty"][0].endswith("\\*") and md["empty"][2].endswith("\\*")  # the value and the average over it
    assert not any(c.endswith("\\*") for c in md["oracle-box"])
    tex = {line.split(" & ")[0]: line for line in table("latex").splitlines() if " & " in line}
    assert tex["empty"].rstrip(" \\").endswith("$^*$") and "$^*$" not in tex["oracle-box"]
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(table("csv")))}
    assert rows["empty"]["partial"].startswith("val cIoU (partial: 2 of ") and rows["empty"]["partial"].endswith("; avg")
    assert rows["oracle-box"]["partial"] == ""


# --- f. a model name is never rewritten: unsafe or colliding names are refused ---------------


def test_unsafe_or_colliding_model_names_are_refused_not_rewritten(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.run.config import ConfigError

    for bad in ("LENS (CoT)", "lens/cot", "../up", ".hidden", "a b"):
        with pytest.raises(ConfigError, match=r"model name .* cannot be a folder of the run; a model name takes letters, digits"):
            build_config(models=bad)
    # a config file's display name too, named as typed
    cfg = isolated / "run.yaml"
    cfg.write_text("models:\n  'LENS 7B (ours)': {adapter: empty}\n")
    with pytest.raises(ConfigError, match=r"'LENS 7B \(ours\)' cannot be a folder"):
        build_config(config_file=cfg)
    # a replay file whose name is not a safe folder name: refused with how to name the model
    with pytest.raises(ConfigError, match=r"'replay-my preds' cannot be a folder .* name the model in a --config file"):
        build_config(models="replay:out/my preds.jsonl")
    # two names that would share a folder: refused naming both as typed
    with pytest.raises(ConfigError, match=r"models 'replay:a/x.jsonl' and 'replay:b/x.jsonl' would share the folder 'replay-x'"):
        build_config(models="replay:a/x.jsonl,replay:b/x.jsonl")
    cfg.write_text("models:\n  Mine: {adapter: empty}\n  mine: {adapter: full}\n")
    with pytest.raises(ConfigError, match=r"models 'Mine' and 'mine' would share a folder on a case-insensitive file system"):
        build_config(config_file=cfg)
    # the command line says so in one line, exit 2; a safe display name is kept as typed
    assert main(["run", "--models", "oracle-box,Oracle-Box", "--suite", "shapes", "--limit", "1", "--out", "x"]) == 2
    assert "models 'oracle-box' and 'Oracle-Box' would share" in capsys.readouterr().err
    cfg.write_text("models:\n  LENS-7B_v1.5+cot: {adapter: empty}\n")
    assert [m.name for m in build_config(config_file=cfg).models] == ["LENS-7B_v1.5+cot"]


# --- g. compare's p-value agrees with its interval, and never prints 0.000 --------------------


def test_compare_p_value_agrees_with_its_interval() -> None:
    import numpy as np
    from helper_paired import paired_difference

    from harness.score.paired import PairScores

    def pair(iou: np.ndarray) -> PairScores:
        n = len(iou)
        return PairScores(tuple(f"s{k:03d}" for k in range(n)), iou * 100, np.full(n, 100.0), iou, np.ones(n, bool))

    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(150):  # skewed differences: a few samples gain a lot, fewer lose
        n = int(rng.integers(5, 40))
        a = rng.uniform(0, 1, n)
        gain = np.where(rng.uniform(size=n) < 0.2, rng.uniform(0, 1, n), 0.0) * rng.choice([1, -1], p=[0.8, 0.2], size=n)
        for metric in ("giou", "ciou"):
            _, _, _, ci, p = paired_difference(pair(a), pair(np.clip(a + gain, 0, 1)), metric, 1e-10, 1000)
            assert ci is not None and p is not None
            excludes_zero = ci[0] > 0 or ci[1] < 0
            assert excludes_zero == (p < 0.05), (ci, p)
            checked += excludes_zero
    assert checked > 20


def test_compare_prints_a_bound_not_zero(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import write_suite

    from harness.score.paired import p_text

    assert (p_text(0.0, 1000), p_text(0.0, 2000), p_text(0.0004, 5000), p_text(0.034, 1000), p_text(None, 1000)) == (
        "< 0.002", "< 0.001", "< 0.001", "0.034", "-")
    suite = write_suite(isolated, val=5, test=1)
    assert main(["run", "--models", "oracle-box,empty", "--suite", str(suite), "--splits", "val", "--out", "a", "--no-report"]) == 0
    for rounds, bound in (("1000", "< 0.002"), ("2000", "< 0.001")):
        capsys.readouterr()
        assert main(["compare", "a", "--no-slices", "--rounds", rounds]) == 0
        out = capsys.readouterr().out
        rows = [line for line in out.splitlines() if line.startswith("oracle-box")]
        assert rows and all(bound in line and "0.000 " not in line for line in rows)
    capsys.readouterr()
    assert main(["compare", "a", "--no-slices", "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "| < 0.002 |" in md and "&lt;" not in md  # a bound reads as typed in Markdown too


# --- h. a full or read-only output directory: one line, exit 2, nothing lost ------------------


class _FullDisk:
    """A log file on a disk that has just filled up: every write fails as the kernel's would."""

    def __init__(self, fh: object) -> None:
        self._fh = fh

    def write(self, data: bytes) -> int:
        import errno
        import os

        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> object:
        return getattr(self._fh, name)


def _error_lines(err: str) -> list[str]:
    """stderr less the progress lines; no traceback may be there."""
    assert "Traceback" not in err
    return [line for line in err.splitlines() if not re.match(r"\S+ \S+: \d+/\d+ samples", line)]


def _stored(out: Path) -> dict[str, object]:
    """What a run holds, less its timings: every log's records (id, mask, box, score) and its results."""
    logs = {str(p.relative_to(out)): [(r["id"], r["prediction"]["mask"], r["prediction"]["box"], r["score"]) for r in read_records(p)]
            for p in sorted(out.rglob("*.jsonl"))}
    results = json.loads((out / "results.json").read_text())
    return {"logs": logs, "results": results["results"], "reasoning": results.get("reasoning")}


def test_a_full_disk_is_one_line_exit_2_and_a_rerun_ends_identical(
        isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import errno
    import os

    from conftest import write_suite

    from harness.records.store import PredictionLog

    suite = write_suite(isolated, val=3, test=2)
    args = ["--models", "shapes-reasoner,oracle-box", "--suite", str(suite), "--batch-size", "2", "--no-report"]
    assert main(["run", *args, "--out", "whole"]) == 0
    want = _stored(isolated / "whole")

    # The disk fills while the second model writes its third batch of val.
    original = PredictionLog.append_many
    calls = {"n": 0}

    def filling(self: PredictionLog, records: list) -> None:
        if self.path.parent.name == "oracle-box":
            calls["n"] += 1
            if calls["n"] == 3:
                self._fh = _FullDisk(self._fh)  # type: ignore[assignment]
        original(self, records)

    monkeypatch.setattr(PredictionLog, "append_many", filling)
    capsys.readouterr()
    assert main(["run", *args, "--out", "full"]) == 2
    err = _error_lines(capsys.readouterr().err)
    log = Path("full") / "oracle-box" / "val.jsonl"  # the path as the command line gave it
    assert len(err) == 1 and err[0].startswith(f"error: {log}: No space left on device (errno ENOSPC); "), err
    monkeypatch.setattr(PredictionLog, "append_many", original)
    assert main(["run", *args, "--out", "full"]) == 0  # space freed: the same command resumes
    assert _stored(isolated / "full") == want

    # The disk is full when results.json is written: nothing of the logs is lost either.
    real_fdopen = os.fdopen

    def full_fdopen(fd: int, *a: object, **k: object) -> object:
        fh = real_fdopen(fd, *a, **k)  # type: ignore[call-overload]

        class Full:
            def __enter__(self) -> Full:
                return self

            def __exit__(self, *exc: object) -> None:
                fh.close()

            def writelines(self, lines: object) -> None:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return Full()

    (isolated / "full" / "results.json").unlink()
    monkeypatch.setattr("harness.files.os.fdopen", full_fdopen)
    capsys.readouterr()
    assert main(["run", *args, "--out", "full"]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "No space left on device (errno ENOSPC)" in err[0] and err[0].startswith("error: full/")
    assert not list((isolated / "full").rglob(".*.tmp"))  # no temporary file left behind
    monkeypatch.setattr("harness.files.os.fdopen", real_fdopen)
    assert main(["run", *args, "--out", "full"]) == 0
    assert _stored(isolated / "full") == want


def test_a_read_only_output_directory_is_one_line_exit_2(
        isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import errno
    import os
    import tempfile

    from conftest import write_suite

    suite = write_suite(isolated, val=2, test=1)
    args = ["--models", "oracle-box", "--suite", str(suite), "--no-report"]
    assert main(["run", *args, "--out", "whole"]) == 0
    out = isolated / "ro"
    out.mkdir()
    if os.geteuid() != 0:  # a real read-only directory (root writes through chmod: simulated below)
        out.chmod(0o555)
        try:
            capsys.readouterr()
            assert main(["run", *args, "--out", str(out)]) == 2
            err = _error_lines(capsys.readouterr().err)
            assert len(err) == 1 and err[0].startswith(f"error: {out}/") and "(errno EACCES)" in err[0]
        finally:
            out.chmod(0o755)
    real_mkstemp = tempfile.mkstemp

    def read_only(*a: object, dir: object = None, **k: object) -> object:
        if str(dir).startswith(str(out)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkstemp(*a, dir=dir, **k)  # type: ignore[call-overload]

    monkeypatch.setattr("harness.files.tempfile.mkstemp", read_only)
    capsys.readouterr()
    assert main(["run", *args, "--out", str(out)]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"error: {out / 'manifest.json'}: Read-only file system (errno EROFS)"), err
    monkeypatch.setattr("harness.files.tempfile.mkstemp", real_mkstemp)
    assert main(["run", *args, "--out", str(out)]) == 0
    assert _stored(out) == _stored(isolated / "whole")


# --- i. smaller still: shard spec, gate's reasons once, arrows in Markdown, binary replay, bad boxes


def test_shard_0_of_0_says_what_a_shard_spec_is(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.run.sharding import ShardError, parse_shard

    for bad in ("0/0", "2/2", "x"):
        capsys.readouterr()
        assert main(["run", "--models", "empty", "--shard", bad, "--out", "r", "--no-report"]) == 2
        err = capsys.readouterr().err
        assert f"--shard {bad!r}" in err or f"--shard {bad}" in err
        assert "a shard spec is i/N: this process takes part i of a split cut into N parts" in err
    with pytest.raises(ShardError, match="there must be at least one shard"):
        parse_shard("0/0")


def _replay_runs(isolated: Path) -> tuple[Path, Path]:
    """Two runs of a model of one name whose configuration changed (its replay file lost a line)."""
    from conftest import write_suite

    suite = write_suite(isolated, val=3, test=1)
    args = ["--suite", str(suite), "--splits", "val", "--no-report"]
    assert main(["run", "--models", "oracle-box", "--out", "src", *args]) == 0
    lines = [json.dumps({"id": r["id"], "mask": r["prediction"]["mask"]}) + "\n"
             for r in read_records(isolated / "src" / "oracle-box" / "val.jsonl")]
    preds = isolated / "preds.jsonl"
    preds.write_text("".join(lines))
    assert main(["run", "--models", f"replay:{preds}", "--out", "base", *args]) == 0
    preds.write_text("".join(lines[1:]))
    assert main(["run", "--models", f"replay:{preds}", "--out", "now", *args]) == 4  # one sample failed
    return isolated / "now", isolated / "base"


def test_gate_prints_its_reasons_once(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, base = _replay_runs(isolated)
    for extra in ([], ["--markdown", "-"]):
        capsys.readouterr()
        assert main(["gate", str(run_dir), "--baseline", str(base), "--metric", "ciou,nosuch", *extra]) == 2
        out, err = capsys.readouterr()
        reason = "unknown metric 'nosuch'"
        assert (out + err).count(reason) == 1 and reason in out
        assert "error: not comparable (" in err


def test_gate_markdown_shows_arrows_as_typed(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, base = _replay_runs(isolated)
    capsys.readouterr()
    assert main(["gate", str(run_dir), "--baseline", str(base), "--allow-partial", "--max-failed", "1", "--markdown", "-"]) in (0, 1)
    md = capsys.readouterr().out
    assert "the model's configuration changed (model fingerprint " in md
    assert "&gt;" not in md and "&lt;" not in md and " -> " in md
    from harness.publish.mdtext import cell

    assert cell("a -> b | <b>x</b> < 0.002") == "a -> b \\| \\<b>x\\</b> < 0.002"


def test_a_binary_replay_file_is_named(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gzip

    from harness.builtin_adapters.replay import ReplayError, load_replay_file

    binary = isolated / "preds.jsonl"
    binary.write_bytes(gzip.compress(b'{"id": "x", "mask": null}\n'))
    with pytest.raises(ReplayError, match=rf"^{re.escape(str(binary))}:1: not UTF-8 text \(byte 0x8b at column 2\)"):
        load_replay_file(binary)
    capsys.readouterr()
    assert main(["run", "--models", f"replay:{binary}", "--limit", "1", "--out", "r", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert f"{binary}:1: not UTF-8 text" in err and "Traceback" not in err


def test_the_box_rule_fails_the_box_keeps_the_mask_and_counts(isolated: Path) -> None:
    import math

    from conftest import results_of, write_suite

    from harness import masks
    from harness.data.conventions import Conventions
    from harness.score.scoring import bad_box, score_sample
    from harness.types import GroundTruth, Prediction

    # by hand: each bad box is a box miss; the mask's score is the one it has with a good box
    gt = GroundTruth(mask=masks.box_mask((2.0, 2.0, 6.0, 5.0), 8, 10), box=(2.0, 2.0, 6.0, 5.0))
    mask = masks.box_mask((2.0, 2.0, 6.0, 4.0), 8, 10)
    good = score_sample(Prediction(mask=mask, box=(2.0, 2.0, 6.0, 5.0)), gt, Conventions())
    assert good.box_iou == 1.0 and not good.bad_box and not bad_box(None)
    for box in ((6.0, 2.0, 2.0, 5.0), (2.0, 5.0, 6.0, 2.0), (-0.5, 2.0, 6.0, 5.0), (2.0, 2.0, math.nan, 5.0), (2.0, 2.0, math.inf, 5.0)):
        s = score_sample(Prediction(mask=mask, box=box), gt, Conventions())  # type: ignore[arg-type]
        assert s.bad_box and s.box_iou == 0.0 and (s.intersection, s.union, s.iou) == (good.intersection, good.union, good.iou)

    # end to end through a replay file: kept, scored, counted, stored as JSON (null for NaN), rescored alike
    suite = write_suite(isolated, val=3, test=1)
    args = ["--suite", str(suite), "--splits", "val"]
    assert main(["run", "--models", "oracle-box", "--out", "src", "--no-report", *args]) == 0
    recs = read_records(isolated / "src" / "oracle-box" / "val.jsonl")
    bad = {recs[0]["id"]: [float("nan"), 1.0, 5.0, 5.0], recs[1]["id"]: [9.0, 1.0, 2.0, 5.0], recs[2]["id"]: [-3.0, 1.0, 5.0, 5.0]}
    replay = isolated / "boxes.jsonl"
    replay.write_text("".join(json.dumps({"id": r["id"], "mask": r["prediction"]["mask"],
                                          "box": bad.get(r["id"], r["prediction"]["box"])}) + "\n" for r in recs))
    assert main(["run", "--models", f"replay:{replay}", "--out", "out", *args]) == 0  # no sample failed
    res = results_of(isolated / "out")["replay-boxes"]["val"]
    src = results_of(isolated / "src")["oracle-box"]["val"]
    assert res["n_bad_box"] == 3 and res["n_failed"] == 0 and "n_bad_box" not in src
    assert (res["ciou"], res["giou"]) == (src["ciou"], src["giou"])  # the masks' scores are untouched
    assert res["box_miou"] < src["box_miou"]
    got = {r["id"]: r for r in read_records(isolated / "out" / "replay-boxes" / "val.jsonl")}
    assert got[recs[0]["id"]]["prediction"]["box"] == [None, 1.0, 5.0, 5.0]
    assert all(got[i]["score"]["bad_box"] and got[i]["score"]["box_iou"] in (0.0, None) for i in bad), [got[i]["score"] for i in bad]
    assert not any(r["score"]["bad_box"] for i, r in got.items() if i not in bad)
    before = {i: r["score"] for i, r in got.items()}
    assert main(["rescore", str(isolated / "out")]) == 0
    assert {r["id"]: r["score"] for r in read_records(isolated / "out" / "replay-boxes" / "val.jsonl")} == before


def test_disagreement_gallery_says_when_no_box_was_stated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    live = run(build_config(models="shapes-reasoner", suite="shapes", splits="val", limit=3, out=tmp_path / "live"),
               render=False).run_dir
    replay = tmp_path / "nobox.jsonl"  # the same text and masks, no box stated
    replay.write_text("".join(json.dumps({"id": r["id"], "mask": r["prediction"]["mask"], "text": r["prediction"]["text"]}) + "\n"
                              for r in read_records(live / "shapes-reasoner" / "val.jsonl")))
    out = run(build_config(models=f"replay:{replay}", suite="shapes", splits="val", limit=3, out=tmp_path / "out")).run_dir
    section = (out / "report" / "index.html").read_text().split('<section id="reasoning">')[1].split("</section>")[0]
    assert "No model stated a box to compare with its mask." in section and '<p class="box-mask">' not in section
