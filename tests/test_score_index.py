"""The score index beside each log: equal to parsing the log, rebuilt whenever it may be stale,
and every consumer gives the same numbers with or without it, reading each log once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import write_suite

from harness.cli import main
from harness.records import score_index, store
from harness.records.score_index import entry_of, index_path
from harness.records.store import PredictionLog, RunDir, read_records
from harness.run.config import build_config
from harness.run.runner import run

pytestmark = pytest.mark.usefixtures("isolated")


def _parsed(log: Path) -> list[score_index.IndexEntry]:
    """The index as it must be: every record of the log, parsed whole, with its line's byte range."""
    out, offset = [], 0
    raw = log.read_bytes().splitlines(keepends=True)
    for line, rec in zip(raw, read_records(log)):
        out.append(entry_of(rec, offset, len(line)))
        offset += len(line)
    return out


def _flaky_run(tmp_path: Path) -> Path:
    suite = write_suite(tmp_path, val=4, test=2)
    run(build_config(models="flaky,oracle-box", suite=str(suite), out=tmp_path / "run"), render=False)
    return tmp_path / "run"


def _on_disk(log: Path) -> list[score_index.IndexEntry]:
    lines = index_path(log).read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"harness_score_index": score_index.FORMAT, "fields": list(score_index.SCORE_FIELDS)}
    return [score_index._parse(line) for line in lines[1:]]


def test_the_index_written_during_a_run_equals_parsing_the_log(tmp_path: Path) -> None:
    out = _flaky_run(tmp_path)
    log = out / "flaky" / "val.jsonl"
    expected = _parsed(log)
    assert _on_disk(log) == expected
    assert any(e.failed and e.error and "CUDA went away" in e.error for e in expected)
    assert any(not e.failed and e.score is not None for e in expected)
    index = RunDir(out).index(log)
    assert index.entries == expected
    # every entry points at its own line: reading by offset gives the records back
    assert list(index.read(index.entries)) == read_records(log)


def test_a_torn_index_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    out = _flaky_run(tmp_path)
    log = out / "flaky" / "val.jsonl"
    expected = _parsed(log)
    idx = index_path(log)
    text = idx.read_bytes()
    idx.write_bytes(text[: len(text) - 7])  # cut inside the last line
    os.utime(idx, ns=(log.stat().st_mtime_ns + 1, log.stat().st_mtime_ns + 1))
    assert RunDir(out).index(log).entries == expected
    assert _on_disk(log) == expected  # and written again, whole
    # An index that lost its first lines (its last line still matches the log's end) is not trusted.
    lines = idx.read_text(encoding="utf-8").splitlines(keepends=True)
    idx.write_text(lines[0] + "".join(lines[3:]), encoding="utf-8")
    assert RunDir(out).index(log).entries == expected and _on_disk(log) == expected


def test_a_log_that_grew_without_its_index_is_reindexed(tmp_path: Path) -> None:
    out = _flaky_run(tmp_path)
    log = out / "flaky" / "val.jsonl"
    first = read_records(log)[0]
    with log.open("a", encoding="utf-8") as fh:  # as if killed between the log line and its index line
        fh.write(json.dumps({**first, "score": {**first["score"], "iou": 0.25}}) + "\n")
    entries = RunDir(out).index(log)
    assert entries.entries == _parsed(log) and len(entries.entries) == len(read_records(log))
    assert entries.latest()[first["id"]].score.iou == 0.25  # the later line for an id counts
    assert _on_disk(log) == _parsed(log)


def test_a_rewritten_or_cut_log_is_reindexed(tmp_path: Path) -> None:
    out = _flaky_run(tmp_path)
    log = out / "oracle-box" / "val.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    # Same size, other content (two lines swapped): the index's last line no longer points at its record.
    log.write_text("".join([lines[1], lines[0], *lines[2:]]) if len(lines[0]) == len(lines[1]) else "".join(lines[::-1]),
                   encoding="utf-8")
    assert RunDir(out).index(log).entries == _parsed(log)
    log.write_text("".join(lines[:2]), encoding="utf-8")  # cut: shorter than the index says
    assert [e.id for e in RunDir(out).index(log).entries] == [r["id"] for r in read_records(log)]
    # Another index format is never read as this one.
    index_path(log).write_text('{"harness_score_index": 0}\n', encoding="utf-8")
    assert RunDir(out).index(log).entries == _parsed(log)


def test_an_edited_log_newer_than_its_index_is_reindexed(tmp_path: Path) -> None:
    out = _flaky_run(tmp_path)
    log = out / "oracle-box" / "val.jsonl"
    text = log.read_text(encoding="utf-8")
    edited = text.replace('"iou":1.0', '"iou":0.5', 1)  # same length, same last line, an earlier line changed
    assert edited != text and len(edited) == len(text)
    log.write_text(edited, encoding="utf-8")
    st = index_path(log).stat()
    os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert RunDir(out).index(log).entries == _parsed(log)
    assert any(e.score.iou == 0.5 for e in _parsed(log))


def test_writer_cuts_a_torn_log_and_keeps_its_index_in_step(tmp_path: Path) -> None:
    path = tmp_path / "m" / "val.jsonl"
    log = PredictionLog(path)
    log.append({"id": "a", "prediction": {"mask": None, "error": "boom"}})
    log.close()
    with path.open("ab") as fh:
        fh.write(b'{"id": "b", "predi')
    log = PredictionLog(path)
    assert log.done() == {"a"} and log.done(retry_failed=True) == set()
    log.append({"id": "b", "prediction": {"mask": {"size": [1, 1], "counts": "01"}}})
    log.close()
    assert _on_disk(path) == _parsed(path) == RunDir(tmp_path).index(path).entries
    assert [e.failed for e in _parsed(path)] == [True, False]


def test_consumers_give_identical_results_with_and_without_the_index(tmp_path: Path) -> None:
    out = _flaky_run(tmp_path)
    with_index = (out / "results.json").read_text()
    assert main(["report", str(out)]) == 0
    report_with = (out / "report" / "index.html").read_text()
    for idx in out.glob("*/*.jsonl.scores"):
        idx.unlink()
    (out / "results.json").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "results.json").read_text() == with_index
    assert (out / "report" / "index.html").read_text() == report_with
    names = sorted(p.name for p in (out / "flaky").iterdir() if not p.name.startswith("."))
    assert names == ["test.jsonl", "test.jsonl.scores", "val.jsonl", "val.jsonl.scores"]
    assert main(["baseline", "save", str(out), "--to", str(tmp_path / "b.json")]) == 0
    for idx in out.glob("*/*.jsonl.scores"):
        idx.unlink()
    assert main(["baseline", "save", str(out), "--to", str(tmp_path / "b2.json")]) == 0
    first, second = (json.loads((tmp_path / n).read_text()) for n in ("b.json", "b2.json"))
    assert {k: v for k, v in first.items() if k != "created"} == {k: v for k, v in second.items() if k != "created"}


def test_results_from_the_index_equal_results_from_parsed_records(tmp_path: Path) -> None:
    from harness.data.suites import load_suite
    from harness.score.metrics import summarize
    from harness.types import SampleScore

    out = _flaky_run(tmp_path)
    conv = load_suite(str(tmp_path / "mini.yaml")).conventions
    results = json.loads((out / "results.json").read_text())["results"]
    for model in ("flaky", "oracle-box"):
        for split in ("val", "test"):
            by_id = {r["id"]: SampleScore.from_json(r["score"]) for r in read_records(out / model / f"{split}.jsonl")}
            expected = summarize([by_id[i] for i in sorted(by_id)], conv)  # rows enter in sample-id order
            got = {k: v for k, v in results[model][split].items()
                   if k not in ("n_expected", "n_split", "complete", "incomplete", "data")}
            assert got == json.loads(json.dumps(expected))


def test_resume_report_and_gate_read_each_log_once_and_no_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = write_suite(tmp_path, val=4, test=2)
    cfg = build_config(models="oracle-box", suite=str(suite), out=tmp_path / "run")
    run(cfg, render=False)
    loads: list[Path] = []
    scans: list[Path] = []
    real_load, real_scan = score_index.load, store._scan
    monkeypatch.setattr(score_index, "load", lambda p, *a, **k: loads.append(p) or real_load(p, *a, **k))
    monkeypatch.setattr(store, "_scan", lambda p: scans.append(p) or real_scan(p))
    (tmp_path / "run" / ".finished.json").unlink()  # make the resume recompute results and the report
    run(cfg, render=True)
    assert sorted(loads) == sorted(set(loads)) and len(loads) == 2  # val and test, once each
    assert scans == []  # the index was valid: no log line was parsed, masks included
    loads.clear()
    assert main(["report", str(tmp_path / "run")]) == 0
    assert len(loads) == 2 and scans == []
    loads.clear()
    assert main(["gate", str(tmp_path / "run"), "--baseline", str(tmp_path / "run")]) in (0, 1)
    assert len(loads) == 4 and scans == []  # the run and its baseline (the same directory here), once each
