"""The append-only logs: a killed run's truncated tail is tolerated, corruption is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.files import write_json_atomic
from harness.records.store import PredictionLog, StoreError, read_json, read_records


def test_append_and_read_back(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "m" / "val.jsonl")
    for i in range(3):
        log.append({"id": f"s{i}", "v": i})
    log.close()
    assert [r["id"] for r in read_records(log.path)] == ["s0", "s1", "s2"]


def test_truncated_last_line_is_skipped_and_cut_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "val.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "predic')
    assert [r["id"] for r in read_records(path)] == ["a", "b"]
    log = PredictionLog(path)
    assert set(log.done()) == {"a", "b"}
    log.append({"id": "c"})
    log.close()
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n{"id":"c"}\n'


def test_complete_last_record_without_newline_is_redone(tmp_path: Path) -> None:
    path = tmp_path / "val.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}')
    assert set(PredictionLog(path).done()) == {"a"}
    assert path.read_text() == '{"id": "a"}\n'


def test_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "val.jsonl"
    path.write_text('{"id": "a"}\n{"id": oops}\n{"id": "c"}\n')
    with pytest.raises(StoreError, match=r"val\.jsonl:2: corrupt record"):
        read_records(path)
    with pytest.raises(StoreError, match=r"val\.jsonl:2"):
        PredictionLog(path).done()


def test_write_json_atomic_and_read_errors(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_json_atomic(path, {"a": 1})
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left behind
    path.write_text('{"a": ')
    with pytest.raises(StoreError, match=r"results\.json: malformed JSON"):
        read_json(path)
    with pytest.raises(StoreError, match="does not exist"):
        read_json(tmp_path / "missing.json")
    with pytest.raises(ValueError):
        write_json_atomic(path, {"nan": float("nan")})  # NaN is not JSON: refuse rather than write it
    assert path.read_text() == '{"a": '  # a failed write leaves the old file as it was
