"""Samples without answers: a model is given a Query (no ground truth), in-process and in a worker;
only an oracle is given the Sample, and only in-process."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import helper_snoop
import pytest
from conftest import write_suite
from helper_adapters import predict_samples
from helper_datasets import write_grefcoco, write_reasonseg

from harness import registry
from harness.data.samples import load_samples
from harness.data.suites import load_suite
from harness.records.store import read_records
from harness.registry import AdapterEntry, create_adapter
from harness.run.config import build_config
from harness.run.inputs import collect
from harness.run.predict import image_groups
from harness.run.remote import RemoteAdapter, WorkerError
from harness.run.runner import run
from harness.run.worker import PROTOCOL, QUERY_FIELDS, query_to_json, serve
from harness.types import QUERY_META, RLE, GroundTruth, Query, Sample

TESTS = Path(__file__).parent
pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture
def snoops(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = {n: AdapterEntry(n, t, "test") for n, t in helper_snoop.ENTRY_POINTS.items()}
    monkeypatch.setattr(registry, "BUILTINS", {**registry.BUILTINS, **entries})
    helper_snoop.Snoop.inputs_seen.clear()


@pytest.fixture
def worker_snoops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The snoop adapters registered through an entry point, the way a worker finds plugins."""
    site = tmp_path / "site"
    info = site / "harness_snoop_tests-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-snoop-tests\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[harness.adapters]\n" + "".join(f"{n} = {t}\n" for n, t in helper_snoop.ENTRY_POINTS.items()))
    path = [str(site), str(TESTS), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))


def shapes_samples(tmp_path: Path) -> list[Sample]:
    suite = load_suite(str(write_suite(tmp_path, val=3, test=1)))
    return load_samples(suite, ["val"], None)["val"]


def rles(gt: GroundTruth) -> list[RLE]:
    return [r for r in (gt.mask, gt.ignore, gt.overlap) if r is not None]


def assert_no_answer(seen: dict[str, list[Any]], samples: Iterable[Sample]) -> None:
    """What a snoop reached holds no ground-truth value of any sample, and no name but a Query's."""
    samples = list(samples)
    assert set(seen["names"]) <= set(QUERY_FIELDS) | QUERY_META, set(seen["names"]) - set(QUERY_FIELDS) - QUERY_META
    strings = set(seen["strings"])
    for s in samples:
        for rle in rles(s.gt):
            assert rle["counts"] not in strings, s.id
        for key in set(s.meta) - QUERY_META:  # dropped meta (kind "no_target", boxes, ann_ids, ...) is unreachable
            assert key not in seen["names"]
    reached = [float(v) for v in seen["numbers"]]
    for s in samples:
        if s.gt.box is not None:  # a number may recur by chance (an id), all four of a box do not
            assert not all(float(v) in reached for v in s.gt.box), s.id


def snooped(records: list[dict[str, Any]]) -> list[dict[str, list[Any]]]:
    return [json.loads(r["prediction"]["text"]) for r in records]


# -- what a model is given ---------------------------------------------------------------------


def test_a_query_keeps_only_what_a_model_may_use() -> None:
    gt = GroundTruth(mask={"size": [4, 4], "counts": "04L4"}, box=(0.0, 0.0, 4.0, 4.0),
                     ignore={"size": [4, 4], "counts": "<2"}, overlap={"size": [4, 4], "counts": "=1"})
    meta = {"is_sentence": True, "object": "7", "sent_id": 3, "ann_ids": [-1], "boxes": [[0, 0, 4, 4]], "category": "dog",
            "kind": "no_target", "empty_segmentation": True, "sent": "raw text"}
    s = Sample("d/val/7/3", "img.jpg", "the dog", gt, "d", "val", no_target=True, meta=meta)
    q = s.query()
    assert q == Query("d/val/7/3", "img.jpg", "the dog", "d", "val", meta={"is_sentence": True, "object": "7", "sent_id": 3})
    assert not hasattr(q, "gt") and not hasattr(q, "no_target")
    with pytest.raises(AttributeError):  # slots: there is no room to attach anything to a query on the way
        object.__setattr__(q, "gt", gt)
    assert_no_answer(helper_snoop.reach(q), [s])
    assert helper_snoop.reach(s)["names"] != helper_snoop.reach(q)["names"]  # the snoop does see a Sample's gt


def test_queries_of_real_sources_carry_no_answer(tmp_path: Path) -> None:
    """gRefCOCO (no-target flag in ann_ids, boxes, overlap) and ReasonSeg (ignore regions), read by their sources."""
    root = tmp_path / "data"
    write_grefcoco(root)
    write_reasonseg(root)
    gref = load_samples(load_suite("grefcoco"), ["val"], root)["val"]
    reason = next(iter(load_samples(load_suite("reasonseg"), ["val"], root).values()))
    assert any(s.no_target for s in gref) and any(s.gt.overlap for s in gref) and any("boxes" in s.meta for s in gref)
    assert any(s.gt.ignore for s in reason)
    for samples in (gref, reason, shapes_samples(tmp_path)):
        assert_no_answer(helper_snoop.reach([s.query() for s in samples]), samples)
    assert all(s.query().meta["is_sentence"] == s.meta["is_sentence"] for s in reason)  # LISA's prompt needs it


@pytest.mark.usefixtures("snoops")
def test_an_in_process_model_cannot_reach_the_answer(tmp_path: Path) -> None:
    samples = shapes_samples(tmp_path)
    assert any(s.meta.get("kind") == "no_target" for s in samples)  # the kind alone would give these away
    out = run(build_config(models="snoop", suite=str(write_suite(tmp_path, val=3, test=1)), splits="val", out=tmp_path / "run"),
              render=False).run_dir
    records = read_records(out / "snoop" / "val.jsonl")
    assert [r["id"] for r in records] == [s.id for s in samples]
    for seen in snooped(records):
        assert_no_answer(seen, samples)
    by_id = {s.id: s for s in samples}
    for r, seen in zip(records, snooped(records)):
        assert r["id"] in seen["strings"] and by_id[r["id"]].expression in seen["strings"]  # it does see its query


@pytest.mark.usefixtures("snoops")
def test_harness_inputs_gives_a_query(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=2, test=1)
    samples = shapes_samples(tmp_path)
    collect("snoop", str(suite), "val")
    assert len(helper_snoop.Snoop.inputs_seen) == len(samples)
    for seen in helper_snoop.Snoop.inputs_seen:
        assert_no_answer(seen, samples)


class RecordingPipe:
    """Stands in for a worker's stdin; keeps every byte written to it."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.data = raw, bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return int(self.raw.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


@pytest.mark.usefixtures("worker_snoops")
def test_a_model_in_a_worker_cannot_reach_the_answer_and_none_crosses_the_pipe(tmp_path: Path) -> None:
    samples = shapes_samples(tmp_path)
    adapter = RemoteAdapter("snoop", python=sys.executable)
    adapter.load("cpu")
    channel = adapter._channel[0]
    assert channel is not None
    pipe = RecordingPipe(channel.proc.stdin)
    channel.proc.stdin = pipe  # type: ignore[assignment]
    try:
        got = [(s, p.prediction) for path, group in image_groups(samples) for s, p in predict_samples(adapter, group, 8)]
    finally:
        adapter.close()
    assert [s.id for s, _ in got] == [s.id for s in samples] and not any(p.failed for _, p in got)
    for s, p in got:
        seen = json.loads(p.text or "{}")
        assert_no_answer(seen, samples)
        assert s.id in seen["strings"]
    wire = bytes(pipe.data)
    requests = [json.loads(line) for line in wire.splitlines()]
    assert [r["op"] for r in requests] == ["predict"] * len(list(image_groups(samples)))
    for s in samples:
        for rle in rles(s.gt):
            assert rle["counts"].encode() not in wire
    for r in requests:
        for q in r["queries"]:
            assert set(q) == set(QUERY_FIELDS) and set(q["meta"]) <= QUERY_META
    assert b'"gt"' not in wire and b'"no_target"' not in wire and b'"kind"' not in wire


# -- oracles -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("snoops")
def test_an_oracle_is_given_the_samples_in_process(tmp_path: Path) -> None:
    samples = shapes_samples(tmp_path)
    assert create_adapter("oracle-box").info.oracle and not create_adapter("shapes-reasoner").info.oracle
    out = run(build_config(models="snoop-oracle,oracle-box", suite=str(write_suite(tmp_path, val=3, test=1)), splits="val",
                           out=tmp_path / "run"), render=False).run_dir
    by_id = {s.id: s for s in samples}
    for r, seen in zip(records := read_records(out / "snoop-oracle" / "val.jsonl"), snooped(records)):
        assert {"gt", "no_target"} <= set(seen["names"]) and by_id[r["id"]].gt.mask["counts"] in seen["strings"]
    boxed = [r for r in read_records(out / "oracle-box" / "val.jsonl") if by_id[r["id"]].gt.box is not None]
    assert boxed and all(tuple(r["prediction"]["box"]) == by_id[r["id"]].gt.box for r in boxed)


@pytest.mark.usefixtures("worker_snoops")
def test_an_oracle_in_a_worker_is_refused() -> None:
    for name in ("oracle-box", "snoop-oracle"):
        with pytest.raises(WorkerError, match=rf"refused adapter '{name}'.*is an oracle: it is given the ground truth.*in-process"):
            RemoteAdapter(name, python=sys.executable)


def test_the_worker_refuses_ground_truth_and_hidden_meta(tmp_path: Path) -> None:
    s = shapes_samples(tmp_path)[0]
    q = query_to_json(s.query())
    bad = [{**q, "gt": {"mask": s.gt.mask}}, {**q, "no_target": False}, {**q, "meta": {**q["meta"], "kind": "attribute"}}]
    lines = [{"op": "hello", "protocol": PROTOCOL, "adapter": "empty", "options": {}, "id": 0}]
    lines += [{"op": "predict", "image": s.image, "queries": [b], "id": i} for i, b in enumerate(bad, 1)]
    out = io.BytesIO()
    serve(io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in lines)), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["ok"] for r in replies] == [True, False, False, False]
    assert "'gt' is not a query field" in replies[1]["error"] and "'no_target' is not a query field" in replies[2]["error"]
    assert "meta key(s) 'kind' are not given to models" in replies[3]["error"]
    with pytest.raises(TypeError, match="carries Query objects, not Sample"):
        query_to_json(s)  # type: ignore[arg-type]
