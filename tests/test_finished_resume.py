"""A finished run resumed with nothing changed returns at once; scores against changed annotations are refused.

The data is a tiny REFER tree (refs pickle + instances.json + JPEGs) written by the test, so an
annotation file can be changed under a finished run: same sample ids, one object's mask different.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helper_datasets import REFER_ANNS, REFER_IMAGES, instances, write_refer

import harness.run.runner as runner_mod
from harness.cli import main
from harness.data.conventions import Conventions
from harness.data.sources.refer import ReferSource
from harness.records.store import RunDir
from harness.run import finish as finish_mod

MODELS = "oracle-box,empty"


def mini_suite(path: Path) -> Path:
    path.write_text(textwrap.dedent("""\
        name: mini-refcoco
        version: 1
        source:
          format: refer
          splits:
            refcoco_val: {dataset: refcoco, split_by: unc, split: val}
            refcoco_testA: {dataset: refcoco, split_by: unc, split: testA}
        splits:
          refcoco_val: {}
          refcoco_testA: {}
        conventions: {sample_unit: sentence}
        """))
    return path


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "data"
    write_refer(root)
    return {"root": root, "suite": mini_suite(tmp_path / "mini.yaml"), "out": tmp_path / "run", "tmp": tmp_path}


def run_args(s: dict[str, Any], *extra: str, models: str = MODELS, out: Path | None = None) -> list[str]:
    return ["run", "--models", models, "--suite", str(s["suite"]), "--data-root", str(s["root"]), "--out", str(out or s["out"]), *extra]


def change_one_mask(root: Path) -> None:
    """Object 101 (split val, sentences 11 and 12) gets another polygon; ids, boxes and images stay."""
    anns = {k: dict(v) for k, v in REFER_ANNS.items()}
    anns[101]["segmentation"] = [[5, 5, 18, 5, 18, 20, 5, 20]]
    path = root / "refer_seg" / "refcoco" / "instances.json"
    st = path.stat()
    path.write_text(json.dumps(instances(REFER_IMAGES, anns)))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new mtime, so the memoised file hash is recomputed


class Spy:
    """Counts calls of the runner's sample loading and of results writing (the slow path's two costs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loads = 0
        self.writes = 0
        real_load, real_write = runner_mod.load_samples, finish_mod.write_results

        def load(*a: Any, **k: Any) -> Any:
            self.loads += 1
            return real_load(*a, **k)

        def write(*a: Any, **k: Any) -> Any:
            self.writes += 1
            return real_write(*a, **k)

        monkeypatch.setattr(runner_mod, "load_samples", load)
        monkeypatch.setattr(finish_mod, "write_results", write)

    def reset(self) -> None:
        self.loads = self.writes = 0


def results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())["results"]  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- data digests


def test_data_digest_follows_the_annotation_content_without_parsing(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    root, cache = setup["root"], setup["tmp"] / "cache"
    splits = {"refcoco_val": {"split": "val"}, "refcoco_testA": {"split": "testA"}}

    def src() -> ReferSource:
        return ReferSource({"dataset": "refcoco", "splits": splits}, Conventions(sample_unit="sentence"), root, cache)

    monkeypatch.setattr(ReferSource, "build", lambda *a: pytest.fail("the digest must not parse the split"))
    before = {s: src().data_digest(s) for s in splits}
    assert before["refcoco_val"] != before["refcoco_testA"]  # the split's parameters count
    assert before == {s: src().data_digest(s) for s in splits}  # stable across processes' sources
    change_one_mask(root)
    after = {s: src().data_digest(s) for s in splits}
    # instances.json serves both splits: both digests change (what they come from changed)
    assert after["refcoco_val"] != before["refcoco_val"] and after["refcoco_testA"] != before["refcoco_testA"]


def test_the_run_records_each_splits_data_digest(setup: dict[str, Any]) -> None:
    assert main(run_args(setup, "--no-report")) == 0
    manifest = json.loads((setup["out"] / "manifest.json").read_text())
    assert set(manifest["data"]) == {"refcoco_val", "refcoco_testA"}
    assert all(d.startswith("refer:") for d in manifest["data"].values())


# ----------------------------------------------------------------------------- stale scores refused


def test_changed_annotations_are_refused_until_rescored(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    out, tmp = setup["out"], setup["tmp"]
    assert main(run_args(setup)) == 0
    assert main(["baseline", "save", str(out), "--to", str(tmp / "base.json")]) == 0
    old = results(out)
    change_one_mask(setup["root"])
    capsys.readouterr()

    def refused(argv: list[str]) -> str:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "'refcoco_val'" in err and "annotation data" in err and f"harness rescore {out}" in err, err
        return err

    refused(run_args(setup))
    refused(run_args(setup, "--splits", "refcoco_testA"))  # the results would still publish refcoco_val's stale scores
    refused(["report", str(out)])
    refused(["merge", str(out)])
    refused(["gate", str(out), "--baseline", str(tmp / "base.json")])
    refused(["baseline", "save", str(out), "--to", str(tmp / "base2.json")])
    refused(["leaderboard", str(out), "--out", str(tmp / "site")])
    refused(["compare", str(out), "--no-slices"])
    refused(["table", str(out), "--layout", "lens-table1"])
    assert results(out) == old  # nothing was rewritten
    assert not (tmp / "base2.json").exists()

    assert main(["rescore", str(out)]) == 0
    assert "4 stored scores disagreed" in capsys.readouterr().out  # the two sentences of object 101, for each model
    fresh = tmp / "fresh"
    assert main(run_args(setup, out=fresh)) == 0
    now, want = results(out), results(fresh)
    assert now == want
    assert now["oracle-box"]["refcoco_val"]["ciou"] != old["oracle-box"]["refcoco_val"]["ciou"]
    assert now["oracle-box"]["refcoco_testA"] == old["oracle-box"]["refcoco_testA"]
    # the new digest is recorded: everything accepts the run again
    assert main(run_args(setup)) == 0
    assert main(["report", str(out)]) == 0
    assert main(["gate", str(out), "--baseline", str(tmp / "base.json")]) in (0, 1)  # comparable (it may well regress)


def test_a_run_without_recorded_digests_is_not_refused_and_gets_them(setup: dict[str, Any]) -> None:
    out = setup["out"]
    assert main(run_args(setup, "--no-report")) == 0
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["data"]  # as written before data digests existed
    path.write_text(json.dumps(manifest))
    assert main(["report", str(out)]) == 0
    assert main(run_args(setup, "--no-report")) == 0
    assert set(json.loads(path.read_text())["data"]) == {"refcoco_val", "refcoco_testA"}


def test_data_that_cannot_be_found_is_not_checked_by_commands_that_read_no_ground_truth(setup: dict[str, Any]) -> None:
    out, tmp = setup["out"], setup["tmp"]
    assert main(run_args(setup, "--no-report")) == 0
    assert main(["baseline", "save", str(out), "--to", str(tmp / "base.json")]) == 0
    (setup["root"] / "refer_seg" / "refcoco" / "instances.json").unlink()  # a copy of the run without its data
    assert main(["gate", str(out), "--baseline", str(tmp / "base.json")]) == 0


# ----------------------------------------------------------------------------- the fast finished resume


def test_a_finished_run_resumes_without_loading_samples(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    spy = Spy(monkeypatch)
    assert main(run_args(setup)) == 0
    first = capsys.readouterr().out
    spy.reset()
    stamp = RunDir(setup["out"]).stamp_path.read_text()
    monkeypatch.setattr(runner_mod, "_has_work", lambda *a: pytest.fail("a finished run reads no score index"))
    assert main(run_args(setup)) == 0
    assert (spy.loads, spy.writes) == (0, 0)
    assert capsys.readouterr().out == first  # the same table and paths as the run that finished
    assert RunDir(setup["out"]).stamp_path.read_text() == stamp
    # a subset of the splits, or fewer models, change nothing either
    assert main(run_args(setup, "--splits", "refcoco_val", models="empty")) == 0
    assert (spy.loads, spy.writes) == (0, 0)
    # without the report the report is not needed
    assert main(run_args(setup, "--no-report")) == 0
    assert (spy.loads, spy.writes) == (0, 0)


def _slow(spy: Spy, argv: list[str], status: int = 0) -> None:
    spy.reset()
    assert main(argv) == status
    assert spy.loads == 1, "the full path loads the samples"


@pytest.mark.parametrize("change", ["log appended", "results deleted", "results edited", "report deleted", "report edited"])
def test_the_fast_path_is_not_taken_when_an_input_or_output_changed(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                                    change: str) -> None:
    out = setup["out"]
    spy = Spy(monkeypatch)
    assert main(run_args(setup)) == 0
    if change == "log appended":  # a line that supersedes one (as a hand-run adapter or a replay merge would append)
        log = out / "empty" / "refcoco_val.jsonl"
        lines = log.read_text().splitlines()
        log.write_text("\n".join([*lines, lines[0]]) + "\n")
    elif change == "results deleted":
        (out / "results.json").unlink()
    elif change == "results edited":
        doc = json.loads((out / "results.json").read_text())
        doc["results"]["empty"]["refcoco_val"]["ciou"] = 99.0
        (out / "results.json").write_text(json.dumps(doc))
    elif change == "report deleted":
        (out / "report" / "index.html").unlink()
    else:
        path = out / "report" / "index.html"
        path.write_text(path.read_text() + "<!-- edited -->")
    _slow(spy, run_args(setup))
    assert spy.writes == 1
    assert results(out)["empty"]["refcoco_val"]["ciou"] == 0.0
    assert (out / "report" / "index.html").is_file()
    spy.reset()
    assert main(run_args(setup)) == 0  # and now it is up to date again
    assert (spy.loads, spy.writes) == (0, 0)


def test_the_fast_path_is_not_taken_for_a_new_model_a_new_limit_or_changed_data(setup: dict[str, Any],
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = setup["out"]
    spy = Spy(monkeypatch)
    assert main(run_args(setup, "--no-report", models="empty")) == 0
    _slow(spy, run_args(setup, "--no-report", models="empty,oracle-box"))  # a model added: it has work
    assert set(results(out)) == {"empty", "oracle-box"}
    _slow(spy, run_args(setup, "--no-report", "--limit", "1"))
    assert results(out)["empty"]["refcoco_val"]["n"] == 1
    _slow(spy, run_args(setup, "--no-report"))  # back to every sample
    assert results(out)["empty"]["refcoco_val"]["n"] == 3
    change_one_mask(setup["root"])
    spy.reset()
    assert main(run_args(setup, "--no-report")) == 2  # refused, not fast
    assert (spy.loads, spy.writes) == (0, 0)


def test_retry_failed_with_failures_has_work(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from harness import registry
    from harness.registry import AdapterEntry

    monkeypatch.setattr(registry, "BUILTINS", {**registry.BUILTINS, "flaky": AdapterEntry("flaky", "helper_adapters:FlakyAdapter", "test")})
    spy = Spy(monkeypatch)
    assert main(run_args(setup, "--no-report", models="flaky")) == 4
    first = capsys.readouterr()
    spy.reset()
    assert main(run_args(setup, "--no-report", models="flaky")) == 4  # finished, failures and all: the fast path, same status
    again = capsys.readouterr()
    assert (spy.loads, spy.writes) == (0, 0)
    assert again.out == first.out and [line for line in again.err.splitlines() if line.startswith("failed:")] == \
        [line for line in first.err.splitlines() if line.startswith("failed:")]
    _slow(spy, run_args(setup, "--no-report", "--retry-failed", models="flaky"))  # a fresh adapter: each retry succeeds
    assert all(r["n_failed"] == 0 for r in results(setup["out"])["flaky"].values())
    events = json.loads((setup["out"] / "manifest.json").read_text())["events"]
    assert any(e["event"] == "retried_failed" for e in events)


def test_a_run_finished_by_report_merge_or_rescore_resumes_fast(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    out = setup["out"]
    spy = Spy(monkeypatch)
    assert main(run_args(setup, "--no-report")) == 0
    for command in (["report", str(out)], ["merge", str(out)], ["rescore", str(out)]):  # each rewrites results.json
        assert main(command) == 0
        spy.reset()
        assert main(run_args(setup, *(["--no-report"] if command[0] == "rescore" else []))) == 0, command
        assert (spy.loads, spy.writes) == (0, 0), command
