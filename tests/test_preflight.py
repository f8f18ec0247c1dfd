"""Every model of a run is built and checked before any predicts; a model that cannot start or load
leaves a run directory that the same command, once fixed, resumes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import helper_adapters
import pytest
from conftest import results_of, write_suite

from harness.cli import main
from harness.data.samples import load_samples
from harness.data.suites import load_suite
from harness.records.store import read_json

pytestmark = pytest.mark.usefixtures("isolated")
README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_run_yaml() -> str:
    """The README's run.yaml example, exactly as a user copies it."""
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    return next(b for b in blocks if "out: runs/my-run" in b and "adapter: replay" in b)


def test_readme_run_yaml_with_a_missing_replay_file_fails_first_and_resumes_once_fixed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _readme_run_yaml()
    replay = Path(re.search(r"path: ([^}\s]+)", text).group(1))  # type: ignore[union-attr]
    (tmp_path / "run.yaml").write_text(text)
    command = ["run", "--config", "run.yaml", "--limit", "6", "--no-report"]

    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"model 'mine' (replay): replay file {replay} does not exist" in err and "no model has predicted anything" in err
    # shapes-reasoner comes first in the file, yet predicted nothing: no log lines, no run directory.
    assert not (tmp_path / "runs" / "my-run").exists()

    samples = load_samples(load_suite("shapes"), ["val"], None, 6)["val"]
    replay.parent.mkdir(parents=True, exist_ok=True)
    replay.write_text("".join(json.dumps({"id": s.id, "mask": s.gt.mask}) + "\n" for s in samples))
    assert main(command) == 0
    res = results_of(tmp_path / "runs" / "my-run")
    assert res["mine"]["val"]["n_records"] == 6 and res["mine"]["val"]["ciou"] == pytest.approx(100.0)
    assert res["shapes-reasoner"]["val"]["n_records"] == 6


def test_every_model_that_cannot_start_is_listed_before_any_predicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=2, test=1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "mask": null}\n{"id": \n')
    (tmp_path / "run.yaml").write_text(f"""\
suite: {suite}
splits: [val]
out: runs/two
models:
  counting: {{}}
  opts: {{adapter: empty, options: {{colour: red}}}}
  broken-file: {{adapter: replay, options: {{path: {bad}}}}}
""")
    assert main(["run", "--config", "run.yaml", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "2 of 3 models cannot start" in err
    assert "model 'opts' (empty): TypeError: adapter 'empty' takes no options, got colour" in err
    assert f"model 'broken-file' (replay): {bad}:2: not valid JSON" in err
    assert helper_adapters.CountingAdapter.calls == [] and not (tmp_path / "runs" / "two").exists()


def test_a_model_that_fails_to_load_does_not_stop_the_others_and_resumes_once_fixed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=2, test=1)
    (tmp_path / "bad.ckpt").write_text("garbage")
    (tmp_path / "good.ckpt").write_text("ok")

    def config(ckpt: str, splits: str = "[val]") -> list[str]:
        (tmp_path / "run.yaml").write_text(f"""\
suite: {suite}
splits: {splits}
out: runs/load
models:
  broken: {{adapter: loads-file, options: {{path: {ckpt}}}}}
  counting: {{}}
""")
        return ["run", "--config", "run.yaml"]

    assert main(config("bad.ckpt")) == 4  # the exit status of a run with failures: results and report are written
    captured = capsys.readouterr()
    assert "failed: model 'broken' could not load: RuntimeError: bad.ckpt: corrupt checkpoint" in captured.err
    out = tmp_path / "runs" / "load"
    assert (out / "results.json").is_file() and (out / "report" / "index.html").is_file()
    doc = read_json(out / "results.json")
    assert doc["models"]["broken"]["error"] == "could not load: RuntimeError: bad.ckpt: corrupt checkpoint"
    # Listed, with nothing stored: a model asked for is never left out of the results.
    assert doc["results"]["broken"]["val"]["n_records"] == 0 and doc["results"]["broken"]["val"]["incomplete"] == ["missing"]
    assert doc["results"]["counting"]["val"]["complete"] is True
    assert "corrupt checkpoint" in (out / "report" / "index.html").read_text()
    predicted = len(helper_adapters.CountingAdapter.calls)
    assert predicted > 0 and not (out / "broken").exists()

    # The fix changes the model's configuration; it stored nothing, so the same command takes its place.
    assert main(config("good.ckpt")) == 0
    assert "could not" not in capsys.readouterr().err
    doc = read_json(out / "results.json")
    assert "error" not in doc["models"]["broken"] and doc["results"]["broken"]["val"]["complete"] is True
    assert len(helper_adapters.CountingAdapter.calls) == predicted  # counting's samples were not redone

    # Resuming the finished run loads no model: every sample is stored, so a checkpoint that went
    # bad since is never read (on a GPU, minutes of loading weights for nothing).
    (tmp_path / "good.ckpt").write_text("garbage now")
    assert main(config("good.ckpt")) == 0
    assert "could not" not in capsys.readouterr().err
    # A split the model has not predicted needs it loaded: then the bad checkpoint is found.
    assert main(config("good.ckpt", "[val, test]")) == 4
    assert "failed: model 'broken' could not load: RuntimeError: good.ckpt: corrupt checkpoint" in capsys.readouterr().err


def test_an_isolated_model_is_checked_in_its_worker_before_any_predicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=2, test=1)
    (tmp_path / "run.yaml").write_text(f"""\
suite: {suite}
splits: [val]
out: runs/iso
models:
  counting: {{}}
  far: {{adapter: replay, options: {{path: missing.jsonl}}, python: {sys.executable}}}
""")
    assert main(["run", "--config", "run.yaml", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "model 'far' (replay): far: the worker" in err and "replay file missing.jsonl does not exist" in err
    assert helper_adapters.CountingAdapter.calls == [] and not (tmp_path / "runs" / "iso" / "counting").exists()


def test_an_empty_replay_file_is_bad_input_not_a_run_of_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=2, test=1)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "run"
    assert main(["run", "--models", f"replay:{empty}", "--suite", str(suite), "--out", str(out), "--no-report"]) == 2
    assert f"{empty}: the replay file holds no predictions" in capsys.readouterr().err
    assert not out.exists()  # refused before the run directory is touched


def test_a_model_that_fails_to_load_on_one_rank_is_named_while_the_merge_waits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=4, test=1)
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_text("ok")
    (tmp_path / "run.yaml").write_text(f"""\
suite: {suite}
splits: [val]
out: runs/ranks
models:
  broken: {{adapter: loads-file, options: {{path: {ckpt}}}}}
""")

    def rank(i: int) -> int:
        return main(["run", "--config", "run.yaml", "--no-report", "--shard", f"{i}/2"])

    assert rank(0) == 0
    capsys.readouterr()
    ckpt.write_text("garbage")  # the checkpoint rank 1 reads is bad (a node with a corrupt copy)
    assert rank(1) == 4  # not a success: its half of the split has no predictions
    captured = capsys.readouterr()
    assert "failed: model 'broken' could not load on rank 1/2: RuntimeError: " in captured.err
    assert "broken val: " in captured.out and "could not load on rank 1/2: RuntimeError: " in captured.out  # the merge's wait says why
    assert rank(0) == 4  # another rank's start does not clear rank 1's error
    assert "could not load on rank 1/2" in capsys.readouterr().err
    ckpt.write_text("ok")
    assert rank(1) == 0  # the fixed rank predicts its half and merges
    assert "could not" not in capsys.readouterr().err
    out = tmp_path / "runs" / "ranks"
    doc = read_json(out / "results.json")
    assert "error" not in doc["models"]["broken"] and doc["results"]["broken"]["val"]["complete"] is True
