"""A batch's records are scored together and written with one write: the same scores, the same bytes.

The runner scores a batch with ``score_samples`` and appends it with ``PredictionLog.append_many``
(one write and flush for the log, one for the index). These tests hold that to the record-by-record
path it replaced (``score_sample`` and ``append`` per record) byte for byte, and check that a kill
in the middle of a batch's write loses only that batch's unfinished lines.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from harness.data.conventions import Conventions
from harness.records import score_index
from harness.records.store import PredictionLog, RunDir, read_records
from harness.score.scoring import score_sample, score_samples
from harness.score.version import _probe_cases
from harness.types import Prediction, PredictionStatus, SampleScore

CONVENTIONS = [Conventions(failure=f, ignore=i, gt_overlap=o, empty_union=e)  # type: ignore[arg-type]
               for f, i, o, e in itertools.product(("zero", "as_empty", "skip_ciou", "drop"), ("exclude", "background", "foreground"),
                                                   ("lisa_sum", "binarise"), ("one", "zero", "drop"))]


@pytest.mark.parametrize("conv", CONVENTIONS, ids=lambda c: f"{c.failure}-{c.ignore}-{c.gt_overlap}-{c.empty_union}")
def test_a_batch_is_scored_as_each_sample_alone(conv: Conventions) -> None:
    cases = _probe_cases()  # every branch of score_sample, failures and empty unions included
    not_drawn = Prediction(mask=None, error="left out", status=PredictionStatus.NOT_DRAWN)
    cases.append((not_drawn, cases[0][1], False))
    expected = [score_sample(p, g, conv, nt) for p, g, nt in cases]
    assert score_samples(cases, conv) == expected
    assert score_samples(cases[::-1], conv) == expected[::-1]
    assert score_samples([], conv) == []


def test_a_batch_of_more_than_255_masks_is_counted() -> None:
    from harness import masks

    rles = [masks.full(1 + k % 7, 3) for k in range(600)]  # pycocotools alone overflows past 255 masks in one call
    assert masks.areas(rles) == [masks.area(r) for r in rles] == [3 * (1 + k % 7) for k in range(600)]
    assert masks.areas([]) == []


def _records(n: int, start: int = 0) -> list[dict]:
    recs = []
    for i in range(start, start + n):
        failed = i % 3 == 2
        pred = Prediction(mask=None if failed else {"size": [2, 2], "counts": "04"}, error="boom \u00e9" if failed else None,
                          seconds=0.1 * i)
        score = SampleScore(intersection=i, union=i + 1, gt_area=i, pred_area=1, iou=i / (i + 1), gt_empty=False, pred_empty=failed,
                            failed=failed, parse_failed=False, box_iou=None if i % 2 else 0.5, no_target=False)
        recs.append({"id": f"s/{i}", "expression": f"the \"thing\" n\u00b0{i}", "prediction": pred.to_json(), "score": score.to_json()})
    recs[-1]["oom_halvings"] = 1
    recs[0]["score"] = {"iou": 1.0}  # not a SampleScore's fields: indexed without a score, as before
    return recs


def test_a_batch_write_is_byte_identical_to_one_append_per_record(tmp_path: Path) -> None:
    recs = _records(11)
    one = PredictionLog(tmp_path / "one" / "val.jsonl")
    for rec in recs:
        one.append(rec)
    one.close()
    batched = PredictionLog(tmp_path / "batched" / "val.jsonl")
    for k, chunk in enumerate((recs[:1], recs[1:8], [], recs[8:])):
        batched.append_many(chunk)
        if k == 1:  # a reader while the log is open for appending sees every batch written so far
            assert [e.id for e in RunDir(tmp_path / "batched").index(batched.path).entries] == [r["id"] for r in recs[:8]]
    batched.close()
    for name in ("val.jsonl", "val.jsonl.scores"):
        assert (tmp_path / "batched" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    # The line format itself: compact JSON, keys in the record's order, one line per record.
    lines = (tmp_path / "batched" / "val.jsonl").read_bytes().splitlines(keepends=True)
    assert lines == [(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n").encode() for r in recs]
    # What the writer kept in memory (offsets tracked, not asked of the file) is what a reader rebuilds from the log.
    kept = batched._cache[batched.path]
    assert kept.current() and kept.entries == [score_index.entry_of(r, s, e - s) for r, s, e in _scan_all(batched.path)]
    assert RunDir(tmp_path / "batched").index(batched.path).entries == kept.entries
    # And the index a reader rebuilds from the log alone has the same bytes as the one written beside it.
    fresh = tmp_path / "fresh" / "val.jsonl"
    fresh.parent.mkdir()
    fresh.write_bytes(batched.path.read_bytes())
    RunDir(tmp_path / "fresh").index(fresh)
    assert score_index.index_path(fresh).read_bytes() == score_index.index_path(batched.path).read_bytes()


def _scan_all(path: Path) -> list[tuple[dict, int, int]]:
    from harness.records.store import _scan

    return list(_scan(path))


def test_a_kill_during_a_batch_write_loses_only_its_unfinished_lines(tmp_path: Path) -> None:
    path = tmp_path / "m" / "val.jsonl"
    first, second = _records(4), _records(5, start=4)
    log = PredictionLog(path)
    log.append_many(first)
    log.close()
    # The second batch's write cut short by a kill: three whole lines and a torn fourth reached the
    # file, none of its index lines did.
    whole = b"".join((json.dumps(r, separators=(",", ":")) + "\n").encode() for r in second[:3])
    with path.open("ab") as fh:
        fh.write(whole + (json.dumps(second[3], separators=(",", ":")) + "\n").encode()[:25])
    index_before = score_index.index_path(path).read_bytes()
    log = PredictionLog(path)
    assert log.done() == {r["id"] for r in first + second[:3]}  # the torn line is ignored, the whole ones kept
    assert path.read_bytes().endswith(whole)  # and cut off before appending
    log.append_many(second[3:])  # resume redoes what was lost
    log.close()
    assert [r["id"] for r in read_records(path)] == [r["id"] for r in first + second]
    rebuilt = score_index.index_path(path).read_bytes()
    assert rebuilt.startswith(index_before) and rebuilt != index_before
    assert RunDir(tmp_path).index(path).entries == [score_index.entry_of(r, s, e - s) for r, s, e in _scan_all(path)]
