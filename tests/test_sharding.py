"""Exact sharding: disjoint slices by image, checked merges, equal metrics; locks and crash safety."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import results_of, write_suite

from harness.data.samples import load_samples
from harness.data.suites import load_suite
from harness.records import locks
from harness.records.locks import LockedError
from harness.records.store import read_records
from harness.run.config import build_config
from harness.run.merge import MergeError, merge_and_report
from harness.run.runner import run
from harness.run.sharding import Shard, ShardError, parse_shard

pytestmark = pytest.mark.usefixtures("isolated")


def test_shards_are_disjoint_whole_images_and_cover_the_split(tmp_path: Path) -> None:
    suite = load_suite(str(write_suite(tmp_path, val=7)))
    samples = load_samples(suite, ["val"], None)["val"]
    for n in (1, 2, 3, 5, 9):
        parts = [Shard(i, n).take(samples) for i in range(n)]
        ids = [s.id for p in parts for s in p]
        assert sorted(ids) == sorted(s.id for s in samples) and len(ids) == len(set(ids))
        for a in range(n):  # an image belongs to one shard only
            for b in range(a + 1, n):
                assert not {s.image for s in parts[a]} & {s.image for s in parts[b]}
    assert parse_shard("1/4") == Shard(1, 4)
    for bad in ("4/4", "x/2", "1/0"):
        with pytest.raises(ShardError):
            parse_shard(bad)


def test_two_shard_processes_merge_to_the_single_process_numbers(tmp_path: Path) -> None:
    suite = str(write_suite(tmp_path, val=6, test=3))
    single = run(build_config(models="shapes-reasoner,oracle-box", suite=suite, out=tmp_path / "single"), render=False)
    out = tmp_path / "sharded"
    first = run(build_config(models="shapes-reasoner,oracle-box", suite=suite, out=out, shard="0/2"), render=False)
    assert first.results_path is None and "samples still without predictions" in (first.pending or "")
    assert read_records(out / "oracle-box" / "val.shard-0-of-2.jsonl")
    second = run(build_config(models="shapes-reasoner,oracle-box", suite=suite, out=out, shard="1/2"), render=False)
    assert second.results_path is not None  # the last shard to finish merged
    assert not list(out.rglob("*.shard-*.jsonl"))
    assert results_of(out) == results_of(single.run_dir)
    for model in ("shapes-reasoner", "oracle-box"):
        merged = [r["id"] for r in read_records(out / model / "val.jsonl")]
        assert merged == [r["id"] for r in read_records(single.run_dir / model / "val.jsonl")]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"]["oracle-box"] == {"val": "done", "test": "done"}
    assert manifest["shards"]["oracle-box"]["val"] == {"0/2": "done", "1/2": "done"}


def test_resume_at_another_world_size(tmp_path: Path) -> None:
    suite = str(write_suite(tmp_path, val=6, test=2))
    single = run(build_config(models="oracle-box", suite=suite, out=tmp_path / "single"), render=False)
    out = tmp_path / "mixed"
    run(build_config(models="oracle-box", suite=suite, out=out, shard="1/3"), render=False)
    done_by_shard = len(read_records(out / "oracle-box" / "val.shard-1-of-3.jsonl"))
    assert 0 < done_by_shard
    # A plain run afterwards predicts only what no log has, then the merge is checked.
    outcome = run(build_config(models="oracle-box", suite=suite, out=out), render=False)
    assert outcome.results_path is not None and not list(out.rglob("*.shard-*.jsonl"))
    assert results_of(out) == results_of(single.run_dir)


def test_merge_refuses_missing_and_duplicated_ids(tmp_path: Path) -> None:
    suite = str(write_suite(tmp_path, val=4, test=1))
    out = tmp_path / "run"
    run(build_config(models="empty", suite=suite, splits="val", out=out, shard="0/2"), render=False)
    with pytest.raises(MergeError, match=r"samples of 'val' have no prediction in any shard log"):
        from harness.records.store import RunDir
        from harness.run.merge import merge_split

        merge_split(RunDir(out), "empty", "val", load_samples(load_suite(suite), ["val"], None)["val"])
    run(build_config(models="empty", suite=suite, splits="val", out=out, shard="1/2"), render=False)
    # Damage: the same id in the merged log and in a stray shard log.
    log = out / "empty" / "val.jsonl"
    stray = out / "empty" / "val.shard-0-of-5.jsonl"
    stray.write_text(log.read_text().splitlines(keepends=True)[0])
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["scoring_versions"][stray.relative_to(out).as_posix()] = manifest["scoring_versions"]["empty/val.jsonl"]
    (out / "manifest.json").write_text(json.dumps(manifest))  # as if written by this harness: the ids are what is wrong
    with pytest.raises(MergeError, match="appear in two logs"):
        merge_and_report(out, render=False)


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    suite = str(write_suite(tmp_path, val=2, test=1))
    out = tmp_path / "run"
    out.mkdir()
    with locks.held(out / ".writer.lock", what=str(out)):
        with pytest.raises(LockedError, match="is being written by harness pid"):
            run(build_config(models="empty", suite=suite, out=out), render=False)
    # Ranks of one sharded run share the directory; the same shard twice is refused.
    with locks.held(out / ".writer.lock", shared=True):
        with locks.held(out / "empty" / ".val.shard-0-of-2.lock"):
            with pytest.raises(LockedError):
                run(build_config(models="empty", suite=suite, out=out, shard="0/2"), render=False)


def test_interruptions_are_recorded(tmp_path: Path) -> None:
    suite = str(write_suite(tmp_path, val=2, test=1))
    out = tmp_path / "run"
    run(build_config(models="empty", suite=suite, out=out), render=False)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"]["empty"]["val"]["all"] = "running"  # as a killed run leaves it
    (out / "manifest.json").write_text(json.dumps(manifest))
    run(build_config(models="empty", suite=suite, out=out), render=False)
    events = json.loads((out / "manifest.json").read_text())["events"]
    assert [(e["event"], e["model"], e["split"]) for e in events] == [("interrupted", "empty", "val")]


def test_oom_halves_the_batch_and_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(build_config(models="greedy", suite=str(write_suite(tmp_path, val=2, test=1)), splits="val", out=out, batch_size=4), render=False)
    records = read_records(out / "greedy" / "val.jsonl")
    assert all(r["prediction"]["mask"] is not None for r in records)
    assert max(r.get("oom_halvings", 0) for r in records) == 2  # 4 -> 2 -> 1
    events = json.loads((out / "manifest.json").read_text())["events"]
    assert events[0]["event"] == "oom_halved" and events[0]["max_halvings"] == 2


def test_timeout_and_fail_fast(tmp_path: Path) -> None:
    suite = str(write_suite(tmp_path, val=2, test=1))
    run(build_config(models="slow", suite=suite, splits="val", out=tmp_path / "t", batch_size=1, timeout=0.3), render=False)
    errors = [r["prediction"]["error"] for r in read_records(tmp_path / "t" / "slow" / "val.jsonl")]
    assert sum("timed out after" in (e or "") for e in errors) == 2  # the two samples ending in /0
    with pytest.raises(RuntimeError, match=r"CUDA went away|does not match"):
        run(build_config(models="flaky", suite=suite, splits="val", out=tmp_path / "ff", fail_fast=True), render=False)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun not installed")
def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    suite = str(write_suite(tmp_path, val=6, test=2))
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    base = ["--suite", suite, "--models", "shapes-reasoner", "--no-report"]
    subprocess.run([sys.executable, "-m", "harness", "run", *base, "--out", str(tmp_path / "single")],
                   check=True, env=env, capture_output=True, timeout=300)
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    res = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-port", "29517", "-m", "harness", "run", *base,
                          "--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "results:" in res.stdout
    assert results_of(tmp_path / "ddp") == results_of(tmp_path / "single")
    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    assert manifest["shards"]["shapes-reasoner"]["val"] == {"0/2": "done", "1/2": "done"}
