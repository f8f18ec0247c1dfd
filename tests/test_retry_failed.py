"""``harness run --retry-failed``: failed samples are predicted again, the log stays append-only, and
every reader counts an id's last line once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import results_of, write_suite

from harness.cli import main
from harness.cli.run import EXIT_SAMPLES_FAILED
from harness.publish.baseline import from_run
from harness.records.store import RunDir, read_records
from harness.run.config import build_config
from harness.run.runner import run

pytestmark = pytest.mark.usefixtures("isolated")


def _broken_image(tmp_path: Path, suite: Path) -> tuple[Path, bytes]:
    """Generate the suite's images, then corrupt one; returns it and its good bytes."""
    run(build_config(models="empty", suite=str(suite), splits="val", out=tmp_path / "warm"), render=False)
    image = next((tmp_path / "cache").rglob("val/0002.png"))
    good = image.read_bytes()
    image.write_bytes(good[:100])
    return image, good


def _efficiency(out: Path) -> dict[str, object]:
    return json.loads((out / "manifest.json").read_text())["models"]["oracle-box"]["efficiency"]["val"]  # type: ignore[no-any-return]


def test_retry_failed_predicts_the_failed_samples_again_and_counts_them_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=4, test=1)
    image, good = _broken_image(tmp_path, suite)
    out = tmp_path / "run"
    args = ["run", "--models", "oracle-box", "--suite", str(suite), "--splits", "val", "--out", str(out)]
    assert main(args) == EXIT_SAMPLES_FAILED
    log = out / "oracle-box" / "val.jsonl"
    first = read_records(log)
    n, failed = len(first), [r["id"] for r in first if r["prediction"]["mask"] is None]
    assert failed and all("0002" in i for i in failed)
    before = results_of(out)["oracle-box"]["val"]
    assert before["n_failed"] == len(failed) and before["n_records"] == n

    image.write_bytes(good)  # the transient cause is fixed
    capsys.readouterr()
    assert main(args) == EXIT_SAMPLES_FAILED  # without the flag: today's resume, nothing is redone
    assert read_records(log) == first and results_of(out)["oracle-box"]["val"] == before

    assert main([*args, "--retry-failed"]) == 0
    lines = read_records(log)
    assert lines[:n] == first  # append-only: the failed lines are still there ...
    assert [r["id"] for r in lines[n:]] == failed  # ... and superseded by one new line each
    assert all(r["prediction"]["mask"] is not None for r in lines[n:])
    after = results_of(out)["oracle-box"]["val"]
    assert after["n_failed"] == 0 and after["n_records"] == n == after["n_expected"] and after["n"] == before["n"]
    # exactly the numbers of a run that never failed (same scores, same order, same intervals)
    clean = run(build_config(models="oracle-box", suite=str(suite), splits="val", out=tmp_path / "clean"), render=False)
    assert after == results_of(clean.run_dir)["oracle-box"]["val"] and after["complete"] is True
    # the cost counters add the retried samples to the first run's
    assert _efficiency(out)["all"]["samples"] == n + len(failed)  # type: ignore[index]
    events = json.loads((out / "manifest.json").read_text())["events"]
    assert {"event": "retried_failed", "model": "oracle-box", "split": "val", "samples": len(failed)} in \
        [{k: v for k, v in e.items() if k != "at"} for e in events]
    # gate/baseline and the report count each id once, its last line
    assert len(from_run(out).scores["oracle-box"]["val"].ids) == n
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "no prediction" not in html and "corrupt or truncated" not in html
    assert RunDir(out).index(log).latest().keys() == {r["id"] for r in first}

    # Once nothing failed, --retry-failed has nothing to redo.
    assert main([*args, "--retry-failed"]) == 0
    assert len(read_records(log)) == n + len(failed)


def test_retry_failed_in_shards_supersedes_the_merged_failures(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=4, test=1)
    image, good = _broken_image(tmp_path, suite)
    out = tmp_path / "sharded"
    for i in (0, 1):
        run(build_config(models="oracle-box", suite=str(suite), splits="val", out=out, shard=f"{i}/2"), render=False)
    before = results_of(out)["oracle-box"]["val"]
    assert before["n_failed"] > 0
    image.write_bytes(good)
    for i in (0, 1):
        run(build_config(models="oracle-box", suite=str(suite), splits="val", out=out, shard=f"{i}/2", retry_failed=True),
            render=False)
    assert not [p for p in out.rglob("*.shard-*") if not p.name.startswith(".")]  # merged, shard logs and indexes gone
    merged = read_records(out / "oracle-box" / "val.jsonl")
    assert len(merged) == before["n_records"] == len({r["id"] for r in merged})  # one line per id
    assert all(r["prediction"]["mask"] is not None for r in merged)
    after = results_of(out)["oracle-box"]["val"]
    clean = run(build_config(models="oracle-box", suite=str(suite), splits="val", out=tmp_path / "clean"), render=False)
    assert after == results_of(clean.run_dir)["oracle-box"]["val"] and after["n"] == before["n"]
    assert sum(v["samples"] for v in _efficiency(out).values()) == before["n_records"] + before["n_failed"]  # type: ignore[attr-defined]
