"""The runner end to end on a small shapes suite: layout, batching, resume, failures, replay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import helper_adapters
import pytest
from conftest import results_of, write_suite

from harness import registry
from harness.cli import main
from harness.data.suites import load_suite
from harness.records.manifest import RunConflictError
from harness.records.store import read_records
from harness.registry import UnknownNameError, create_adapter
from harness.run.config import build_config
from harness.run.runner import run
from harness.score.schema import check_results

pytestmark = pytest.mark.usefixtures("isolated")


def test_run_writes_the_run_directory(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)
    outcome = run(build_config(models="empty,oracle-box", suite=str(suite), out=tmp_path / "run"), render=False)
    out = outcome.run_dir
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["suite"]["fingerprint"] == load_suite(str(suite)).fingerprint
    assert set(manifest["models"]) == {"empty", "oracle-box"}
    assert all(len(m["fingerprint"]) == 16 for m in manifest["models"].values())
    assert manifest["status"] == {"empty": {"val": "done", "test": "done"}, "oracle-box": {"val": "done", "test": "done"}}
    assert {"harness", "numpy", "pycocotools", "python"} <= set(manifest["versions"])
    assert "git_commit" in manifest and manifest["conventions"]["empty_union"] == "one"
    data = json.loads((out / "results.json").read_text())
    check_results(data, "results.json")
    assert data["unit"] == "percent"
    res = data["results"]["oracle-box"]["val"]
    assert {"ciou", "giou", "n", "prec@0.5", "ciou_ci95", "box_acc@0.5"} <= set(res)
    assert res["box_acc@0.5"] == 100.0 and res["complete"] is True
    records = read_records(out / "oracle-box" / "val.jsonl")
    assert len(records) == res["n_records"] == res["n_expected"]
    assert all(r["id"].startswith("shapes/val/") and r["expression"] for r in records)
    assert data["results"]["empty"]["val"]["ciou"] == 0.0


def test_batches_share_one_image_and_boxes_are_converted(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=3, test=1)
    run(build_config(models="counting", suite=str(suite), splits="val", out=tmp_path / "run", batch_size=2), render=False)
    calls = helper_adapters.CountingAdapter.calls
    for _, ids in calls:
        assert len({i.rsplit("/", 1)[0] for i in ids}) == 1, "a batch spans two images"
        assert len(ids) <= 2
    records = read_records(tmp_path / "run" / "counting" / "val.jsonl")
    assert len(records) == sum(len(ids) for _, ids in calls)
    # The adapter declared norm1 boxes; stored boxes are original pixels, equal to the GT box.
    res = results_of(tmp_path / "run")["counting"]["val"]
    assert res["box_acc@0.5"] == 100.0 and res["box_miou"] == pytest.approx(100.0)


def test_resume_skips_finished_samples_and_gives_identical_results(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)
    clean = run(build_config(models="counting", suite=str(suite), out=tmp_path / "clean"), render=False).run_dir
    n_total = sum(len(ids) for _, ids in helper_adapters.CountingAdapter.calls)

    # A run killed midway: 5 complete lines of val, the 6th cut while being written, no test split.
    out = tmp_path / "resumed"
    run(build_config(models="counting", suite=str(suite), out=out), render=False)
    log = out / "counting" / "val.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:5]) + lines[5][:40])
    (out / "counting" / "test.jsonl").unlink()
    helper_adapters.CountingAdapter.calls.clear()
    run(build_config(models="counting", suite=str(suite), out=out), render=False)
    redone = sum(len(ids) for _, ids in helper_adapters.CountingAdapter.calls)
    n_test = len(read_records(clean / "counting" / "test.jsonl"))
    assert redone == (len(lines) - 5) + n_test < n_total
    assert results_of(out) == results_of(clean)


def test_cost_counters_accumulate_across_resumes(tmp_path: Path) -> None:
    from harness.records.manifest import add_counters

    suite = write_suite(tmp_path)
    out = tmp_path / "run"
    run(build_config(models="counting", suite=str(suite), out=out), render=False)
    first = json.loads((out / "manifest.json").read_text())["models"]["counting"]["efficiency"]
    n_val = len(read_records(out / "counting" / "val.jsonl"))
    assert first["val"]["all"]["samples"] == n_val
    run(build_config(models="counting", suite=str(suite), out=out), render=False)  # nothing left: adds nothing
    again = json.loads((out / "manifest.json").read_text())["models"]["counting"]["efficiency"]
    assert {s: {k: v["all"][k] for k in ("samples",)} for s, v in again.items()} == \
        {s: {k: v["all"][k] for k in ("samples",)} for s, v in first.items()}
    assert again["val"]["all"]["predict_seconds"] >= first["val"]["all"]["predict_seconds"]
    # Resumed after 3 lines were lost: the 3 redone samples add to the first stint's count.
    log = out / "counting" / "val.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:-3]))
    run(build_config(models="counting", suite=str(suite), out=out), render=False)
    third = json.loads((out / "manifest.json").read_text())["models"]["counting"]["efficiency"]
    assert third["val"]["all"]["samples"] == n_val + 3
    assert add_counters({"samples": 5, "peak_gpu_memory_bytes": 10}, {"samples": 2, "peak_gpu_memory_bytes": 7}) == \
        {"samples": 7, "peak_gpu_memory_bytes": 10}


def test_resume_refuses_changed_conventions(tmp_path: Path) -> None:
    run(build_config(models="empty", suite=str(write_suite(tmp_path)), out=tmp_path / "run"), render=False)
    changed = write_suite(tmp_path, empty_union="zero")
    with pytest.raises(RunConflictError, match="fingerprint"):
        run(build_config(models="empty", suite=str(changed), out=tmp_path / "run"), render=False)


def test_failures_are_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=4, test=1)
    run(build_config(models="empty", suite=str(suite), splits="val", out=tmp_path / "warm"), render=False)
    # Corrupt one generated image (the source reuses existing files).
    image = next((tmp_path / "cache").rglob("val/0002.png"))
    image.write_bytes(image.read_bytes()[:100])
    run(build_config(models="flaky", suite=str(suite), splits="val", out=tmp_path / "run"), render=False)
    records = read_records(tmp_path / "run" / "flaky" / "val.jsonl")
    errors = [r["prediction"]["error"] for r in records if r["prediction"]["error"]]
    assert any("CUDA went away" in e for e in errors)
    assert any("0002.png" in e and "corrupt or truncated" in e for e in errors)
    assert any("does not match the image size" in e for e in errors)
    res = results_of(tmp_path / "run")["flaky"]["val"]
    assert res["n_failed"] == len(errors) and res["n_records"] == res["n_expected"]


def test_replay_contract(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=3, test=1)
    run(build_config(models="oracle-box", suite=str(suite), splits="val", out=tmp_path / "oracle"), render=False)
    records = read_records(tmp_path / "oracle" / "oracle-box" / "val.jsonl")
    replay = tmp_path / "preds.jsonl"
    with replay.open("w") as fh:
        for r in records[1:]:  # the first id is missing: a failed prediction
            line = {"id": r["id"], "mask": r["prediction"]["mask"], "text": '<think>easy</think><answer>{"bbox_2d": []}</answer>'}
            if r["prediction"]["box"] is not None:
                line["box"] = r["prediction"]["box"]
            fh.write(json.dumps(line) + "\n")
    out = tmp_path / "replayed"
    # One sample failed: results are written, and the exit status says so (4).
    assert main(["run", "--models", f"replay:{replay}", "--suite", str(suite), "--splits", "val", "--out", str(out), "--no-report"]) == 4
    got = read_records(out / "replay-preds" / "val.jsonl")
    assert got[0]["prediction"]["error"].startswith("no prediction for this id")
    assert got[1]["prediction"]["reasoning"] == "easy" and got[1]["prediction"]["answer"] == '{"bbox_2d": []}'
    assert [g["score"] for g in got[1:]] == [r["score"] for r in records[1:]]
    assert results_of(out)["replay-preds"]["val"]["n_failed"] == 1

    # A malformed line is a clear error naming the file and line, exit status 2.
    replay.write_text(replay.read_text() + '{"id": "x", "mask": \n')
    code = main(["run", "--models", f"replay:{replay}", "--suite", str(suite), "--splits", "val", "--out", str(tmp_path / "bad")])
    assert code == 2


def test_a_run_says_how_it_ended(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=3, test=1)
    args = ["--suite", str(suite), "--splits", "val", "--no-report"]
    assert main(["run", "--models", "oracle-box", "--out", str(tmp_path / "ok"), *args]) == 0
    out, err = capsys.readouterr()
    table = out.splitlines()
    head = next(k for k, line in enumerate(table) if line.startswith("model "))
    assert table[head].split() == ["model", "split", "cIoU", "gIoU", "n", "failed", "partial"]
    res = results_of(tmp_path / "ok")["oracle-box"]["val"]
    assert table[head + 1].split() == ["oracle-box", "val", f"{res['ciou']:.2f}", f"{res['giou']:.2f}", str(res["n"]), "0"]
    assert "failed" not in err and res["n"] > 3

    # Every sample failed (a replay file recording no mask for any id, plus two ids the suite lacks):
    # not 0, stderr says why, and the foreign ids are counted.
    ids = [r["id"] for r in read_records(tmp_path / "ok" / "oracle-box" / "val.jsonl")]
    n = len(ids)
    replay = tmp_path / "nomask.jsonl"
    replay.write_text("".join(json.dumps({"id": i, "mask": None}) + "\n" for i in [*ids, "other/0", "other/1"]))
    assert main(["run", "--models", f"replay:{replay}", "--out", str(tmp_path / "bad"), *args]) == 4
    out, err = capsys.readouterr()
    assert f"failed: replay-nomask/val: {n} of {n} samples failed (" in err and "mask is null" in err
    assert f"2 of {n + 2} ids are not samples of the chosen splits, ignored: other/0, other/1" in err
    assert next(line for line in out.splitlines() if line.startswith("replay-nomask")).split()[-1] == str(n)
    # A replay file none of whose ids is in the suite is bad input, before anything is predicted.
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("".join(json.dumps({"id": f"other/{k}", "mask": None}) + "\n" for k in range(3)))
    assert main(["run", "--models", f"replay:{foreign}", "--out", str(tmp_path / "foreign"), *args]) == 2
    assert "none of its 3 ids is a sample of the chosen splits (val)" in capsys.readouterr().err
    assert not (tmp_path / "foreign" / "replay-foreign" / "val.jsonl").exists()

    # A --limit run is a quick look: every row of its table says so.
    assert main(["run", "--models", "oracle-box", "--limit", "2", "--out", str(tmp_path / "lim"), *args]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("oracle-box"))
    assert row.endswith(f"2 of {n}, --limit 2")  # predicted of the whole split, as the report and leaderboard say

    # A non-positive --timeout would fail every sample: refused as bad input.
    for bad in ("-1", "0"):
        assert main(["run", "--models", "empty", "--timeout", bad, "--out", str(tmp_path / "t"), *args]) == 2
        assert "--timeout must be positive" in capsys.readouterr().err


def test_unknown_names_get_did_you_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'shapes-reasoner'"):
        create_adapter("shapes-reasoners")
    assert main(["run", "--suite", "shape", "--models", "empty"]) == 2
    assert "Did you mean 'shapes'" in capsys.readouterr().err
    assert main(["run", "--suite", str(write_suite(tmp_path)), "--splits", "vall", "--models", "empty"]) == 2
    assert "Did you mean 'val'" in capsys.readouterr().err


def test_list_imports_no_torch() -> None:
    code = textwrap.dedent("""\
        import sys
        sys.modules['torch'] = None  # any import of torch now raises ImportError
        sys.modules['transformers'] = None
        from harness.cli import main
        assert main(['list']) == 0
        assert 'matplotlib' not in sys.modules
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "shapes-reasoner" in res.stdout and "shapes " in res.stdout


def test_plugins_come_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    (site / "my_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "my_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (site / "my_plugin-1.0.dist-info" / "entry_points.txt").write_text("[harness.adapters]\nmine = my_plugin:Mine\n")
    (site / "my_plugin.py").write_text(textwrap.dedent("""\
        from harness.builtin_adapters.trivial import EmptyAdapter
        class Mine(EmptyAdapter):
            pass
    """))
    monkeypatch.syspath_prepend(str(site))
    entries = registry.all_adapters()
    assert entries["mine"].origin == "my-plugin" and entries["mine"].target == "my_plugin:Mine"
    assert type(create_adapter("mine")).__name__ == "Mine"


@pytest.mark.slow
def test_killed_cli_run_resumes_to_identical_results(tmp_path: Path) -> None:
    """A real `harness run` process killed with SIGKILL midway, then run again."""
    suite = write_suite(tmp_path, val=12, test=8)
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "harness", "run", "--suite", str(suite), "--models", "shapes-reasoner", "--no-report"]
    subprocess.run([*args, "--out", str(tmp_path / "clean")], check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "killed"), "--batch-size", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "shapes-reasoner" / "val.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count("\n") < 5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = log.read_text().count("\n")
    assert 5 <= done_before < 48, "the run was not killed midway"
    assert not (tmp_path / "killed" / "results.json").exists()
    subprocess.run([*args, "--out", str(tmp_path / "killed")], check=True, env=env, capture_output=True, timeout=300)
    assert results_of(tmp_path / "killed") == results_of(tmp_path / "clean")
    clean_ids = [r["id"] for r in read_records(tmp_path / "clean" / "shapes-reasoner" / "val.jsonl")]
    killed_ids = [r["id"] for r in read_records(tmp_path / "killed" / "shapes-reasoner" / "val.jsonl")]
    assert sorted(killed_ids) == sorted(clean_ids)  # every sample once: nothing redone, nothing lost


def test_resuming_a_finished_run_rewrites_nothing_until_an_input_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.run import finish

    suite = write_suite(tmp_path)
    out = tmp_path / "run"
    config = build_config(models="empty", suite=str(suite), out=out)
    run(config)
    results, report = out / "results.json", out / "report" / "index.html"
    before = (results.stat().st_mtime_ns, report.stat().st_mtime_ns, results.read_text())
    efficiency = json.loads((out / "manifest.json").read_text())["models"]["empty"]["efficiency"]
    computed: list[int] = []
    real_write = finish.write_results
    monkeypatch.setattr(finish, "write_results", lambda *a, **k: computed.append(1) or real_write(*a, **k))

    outcome = run(config)  # nothing changed: both files kept as they are
    assert computed == [] and outcome.report_path == report
    assert (results.stat().st_mtime_ns, report.stat().st_mtime_ns, results.read_text()) == before
    assert json.loads((out / "manifest.json").read_text())["models"]["empty"]["efficiency"] == efficiency
    run(build_config(models="empty", suite=str(suite), out=out), render=False)  # results alone up to date: kept too
    assert computed == [] and results.stat().st_mtime_ns == before[0]

    log = out / "empty" / "val.jsonl"
    os.utime(log, ns=(log.stat().st_atime_ns, log.stat().st_mtime_ns + 10**9))  # a log rewritten since
    run(config)
    assert computed == [1] and results.stat().st_mtime_ns != before[0] and results.read_text() == before[2]

    report.write_text("edited")  # an output touched since: redone
    run(config)
    assert computed == [1, 1] and report.read_text() != "edited"
    assert results_of(out) == json.loads(before[2])["results"]
