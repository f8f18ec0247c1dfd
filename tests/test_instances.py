"""Instance predictions (``Prediction.instances``) through the log, the replay format, the worker protocol,
rescore and the verifying reader; the union convention of a suite that wants one mask; a one-mask model on a
suite scored on instances."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import results_of, write_suite
from helper_saco import predictions, write_saco

from harness import masks
from harness.builtin_adapters.replay import ReplayAdapter, ReplayError
from harness.cli import main
from harness.data.conventions import Conventions
from harness.data.samples import load_samples
from harness.data.suites import load_suite
from harness.publish.summary import summary_table
from harness.records import logline
from harness.records.reader import StoredRun
from harness.records.store import read_records
from harness.run.config import build_config
from harness.run.runner import run
from harness.types import Instance, Prediction, Query, Sample


def _pieces(sample: Sample) -> tuple[masks.RLE, masks.RLE]:
    """The ground truth cut in two halves (left columns, the rest)."""
    m = masks.decode(sample.gt.mask)
    left, right = m.copy(), m.copy()
    cols = np.flatnonzero(m.any(axis=0))
    cut = int(cols[len(cols) // 2]) if cols.size else 0
    left[:, cut:], right[:, :cut] = False, False
    return masks.encode(left), masks.encode(right)


def _write(path: Path, lines: dict[str, dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps({"id": k, **v}) + "\n" for k, v in lines.items()))
    return path


def test_the_json_forms() -> None:
    m = masks.encode(np.eye(4, dtype=bool))
    p = Prediction(mask=None, instances=(Instance(m, 0.9, (0.0, 0.0, 4.0, math.inf)), Instance(m, 0.2)))
    data = p.to_json()
    assert data["mask"] is None and data["instances"] == [{"mask": m, "score": 0.9, "box": [0.0, 0.0, 4.0, None]},
                                                          {"mask": m, "score": 0.2}]
    back = Prediction.from_json(json.loads(json.dumps(data)))
    assert back.instances is not None and back.instances[1] == Instance(m, 0.2) and math.isnan(back.instances[0].box[3])  # type: ignore[index]
    assert not p.failed and Prediction(mask=None, instances=()).failed is False and Prediction(mask=None).failed
    assert "instances" not in Prediction(mask=m).to_json()  # a one-mask line is as it always was
    assert logline.failed({"prediction": {"mask": None, "instances": []}, "score": {}}) is False
    shown = logline.without_mask({"id": "x", "prediction": data, "score": {}})["prediction"]
    assert "mask" not in shown and shown["instances"] == [{"score": 0.9, "box": [0.0, 0.0, 4.0, None]}, {"score": 0.2}]


def test_a_mask_suite_scores_the_union_of_instances_at_the_threshold(isolated: Path) -> None:
    suite = write_suite(isolated, val=3, test=1)
    samples = load_samples(load_suite(str(suite)), ["val"], None)["val"]
    junk = masks.encode(np.ones((samples[0].gt.height, samples[0].gt.width), dtype=bool))
    instances, union, strong = {}, {}, {}
    for s in samples:
        left, right = _pieces(s)
        # the whole image at 0.3 stays out of the union; the right half is in at 0.5 and out at 0.7
        instances[s.id] = {"instances": [{"mask": left, "score": 0.9}, {"mask": right, "score": 0.6}, {"mask": junk, "score": 0.3}]}
        union[s.id] = {"mask": masks.union([left, right], s.gt.height, s.gt.width)}
        strong[s.id] = {"mask": left}
    runs = {}
    for name, lines in (("inst", instances), ("union", union), ("strong", strong)):
        runs[name] = run(build_config(models=f"replay:{_write(isolated / f'{name}.jsonl', lines)}", suite=str(suite), splits="val",
                                      out=isolated / name), render=False).run_dir
    inst, same = results_of(runs["inst"])["replay-inst"]["val"], results_of(runs["union"])["replay-union"]["val"]
    assert inst["n_failed"] == 0 and inst["ciou"] < 100
    assert {k: v for k, v in inst.items() if k != "data"} == {k: v for k, v in same.items() if k != "data"}
    doc = json.loads((runs["inst"] / "results.json").read_text())
    assert "scoring" not in doc["conventions"] and "instance_threshold" not in doc["conventions"] and "average" not in doc
    rec = read_records(runs["inst"] / "replay-inst" / "val.jsonl")[0]
    assert rec["prediction"]["mask"] is None and len(rec["prediction"]["instances"]) == 3 and "instances" not in rec["score"]
    StoredRun(runs["inst"]).rederive(None)  # every stored score is what its instances give

    # a stated threshold: 0.7 keeps the left half only
    (isolated / "strict").mkdir()
    strict = write_suite(isolated / "strict", val=3, test=1, instance_threshold="0.7")
    out = run(build_config(models=f"replay:{isolated / 'inst.jsonl'}", suite=str(strict), splits="val", out=isolated / "strict-run"),
              render=False).run_dir
    got = results_of(out)["replay-inst"]["val"]
    assert got["ciou"] == results_of(runs["strong"])["replay-strong"]["val"]["ciou"] != inst["ciou"]
    assert json.loads((out / "results.json").read_text())["conventions"]["instance_threshold"] == 0.7


def test_instances_cross_the_worker_pipe_as_they_are(isolated: Path) -> None:
    suite = write_suite(isolated, val=2, test=1)
    samples = load_samples(load_suite(str(suite)), ["val"], None)["val"]
    lines = {s.id: {"instances": [{"mask": p, "score": 0.8, "box": [1, 2, 3, 4]} for p in _pieces(s)]} for s in samples}
    replay = _write(isolated / "found.jsonl", lines)
    (isolated / "run.yaml").write_text(f"""\
suite: {suite}
splits: [val]
out: far-run
models:
  near: {{adapter: replay, options: {{path: {replay}}}}}
  far: {{adapter: replay, options: {{path: {replay}}}, python: {sys.executable}}}
""")
    assert main(["run", "--config", "run.yaml", "--no-report"]) == 0
    near = {r["id"]: r for r in read_records(isolated / "far-run" / "near" / "val.jsonl")}
    far = {r["id"]: r for r in read_records(isolated / "far-run" / "far" / "val.jsonl")}
    assert len(far) == len(samples)
    for sid, rec in far.items():
        assert rec["prediction"]["instances"] == near[sid]["prediction"]["instances"] == [
            {**i, "box": [1.0, 2.0, 3.0, 4.0]} for i in lines[sid]["instances"]]
        assert rec["score"] == near[sid]["score"]


def test_replay_lines_with_bad_instances(tmp_path: Path) -> None:
    def load(*recs: dict[str, Any]) -> ReplayAdapter:
        path = tmp_path / "r.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        adapter = ReplayAdapter(path=str(path))
        adapter.check()
        return adapter

    m = masks.encode(np.zeros((4, 5), dtype=bool))
    with pytest.raises(ReplayError, match=r"r\.jsonl:2: instance 0 needs a numeric 'score'"):
        load({"id": "a", "instances": []}, {"id": "b", "instances": [{"mask": m}]})
    with pytest.raises(ReplayError, match=r"r\.jsonl:1: 'instances' must be a list"):
        load({"id": "a", "instances": {"mask": m}})
    with pytest.raises(ReplayError, match=r"r\.jsonl:1: record 'a' has no 'mask' nor 'instances'"):
        load({"id": "a"})
    adapter = load({"id": "a", "instances": [{"mask": m, "score": 1}, {"mask": masks.encode(np.zeros((3, 3), bool)), "score": 0.5}]},
                   {"id": "b", "instances": [{"mask": m, "score": float("nan")}]}, {"id": "c", "instances": []})
    queries = [Query(id=i, image="x.jpg", expression="e", dataset="d", split="s") for i in "abc"]
    a, b, c = adapter.predict(np.zeros((4, 5, 3), np.uint8), queries)
    assert a.failed and "instance 1: RLE size [3, 3] does not match the image size [4, 5]" in (a.error or "")
    assert b.failed and "instance 0: score must be a finite number" in (b.error or "")
    assert c.instances == () and not c.failed  # "none found" is an answer


@pytest.fixture
def saco_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    data = write_saco(tmp_path / "data")
    replay = _write(tmp_path / "found.jsonl", predictions(data, leave_out=0))
    out = run(build_config(models=f"replay:{replay}", suite=str(data.suite), data_root=data.root, out=tmp_path / "run"),
              render=False).run_dir
    return data, out


def test_rescore_and_the_reader_police_instance_scores(saco_run: tuple[Any, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data, out = saco_run
    log = out / "replay-found" / "crowded.jsonl"
    original = log.read_text()
    lines = original.splitlines(keepends=True)
    k, rec = next((k, json.loads(line)) for k, line in enumerate(lines) if json.loads(line)["score"]["instances"]["n_dt"] > 0)
    # a stored match that no matching gives: refused on loading, with the file and line
    broken = json.loads(lines[k])
    broken["score"]["instances"]["tp"] = [broken["score"]["instances"]["n_dt"] + 1] * 10
    log.write_text("".join([*lines[:k], json.dumps(broken, separators=(",", ":")) + "\n", *lines[k + 1:]]))
    assert main(["report", str(out), "--data-root", str(data.root)]) == 2
    assert f"{log}:{k + 1}: the stored score of {rec['id']!r} breaks '0 <= tp <= min(n_dt, n_gt)" in capsys.readouterr().err
    # a stored prediction changed by hand (every instance now below the threshold): rescore derives the match again
    edited = json.loads(lines[k])
    for inst in edited["prediction"]["instances"]:
        inst["score"] = 0.1
    log.write_text("".join([*lines[:k], json.dumps(edited, separators=(",", ":")) + "\n", *lines[k + 1:]]))
    assert main(["report", str(out), "--data-root", str(data.root), "--verify", "all"]) == 2
    assert "is not what its mask scores" in capsys.readouterr().err
    assert main(["rescore", str(out), "--data-root", str(data.root)]) == 0
    fixed = {r["id"]: r for r in read_records(log)}[rec["id"]]
    assert fixed["score"]["instances"]["n_dt"] == 0 and fixed["score"]["pred_area"] == 0
    assert main(["report", str(out), "--data-root", str(data.root), "--verify", "all"]) == 0
    StoredRun(out, data_root=data.root).results(intervals=True)


def test_results_json_of_an_instance_suite_is_verified(saco_run: tuple[Any, Path]) -> None:
    data, out = saco_run
    path = out / "results.json"
    doc = json.loads(path.read_text())
    res = doc["results"]["replay-found"]["crowded"]
    assert res["complete"] and res["n_cgf1"] == data.counts["crowded"] - 1 and "cgf1_ci95" in res
    assert doc["conventions"]["scoring"] == "instances"
    assert set(doc["average"]["results"]["replay-found"]) >= {"cgf1", "pmf1", "il_mcc", "cgf1_ci95", "n_cgf1"}
    header, first = summary_table(doc).splitlines()[:2]  # what `harness run` prints
    assert header.split()[:5] == ["model", "split", "cgF1", "cIoU", "gIoU"] and f"{res['cgf1']:.2f}" in first
    for where, key in ((("results", "replay-found", "crowded"), "cgf1"), (("average", "results", "replay-found"), "il_mcc"),
                       (("average", "results", "replay-found"), "cgf1_ci95")):
        tampered = json.loads(path.read_text())
        block = tampered
        for part in where:
            block = block[part]
        block[key] = [0.0, 1.0] if key.endswith("_ci95") else 1.0
        path.write_text(json.dumps(tampered))
        stored = StoredRun(out, data_root=data.root)
        with pytest.raises(Exception, match="says what its logs do not") as err:
            stored.results(intervals=True)
        assert key in str(err.value)
        path.write_text(json.dumps(doc))
    StoredRun(out, data_root=data.root).results(intervals=True)


def test_a_one_mask_model_is_one_instance_of_score_one(saco_run: tuple[Any, Path], tmp_path: Path) -> None:
    data, _ = saco_run
    suite = load_suite(str(data.suite))
    samples = load_samples(suite, ["crowded"], data.root)["crowded"]
    lines = predictions(data, leave_out=0)
    one_mask, one_instance = {}, {}
    for s in samples:
        found = [i["mask"] for i in lines[s.id]["instances"] if i["score"] >= 0.5][:1]
        mask = found[0] if found else masks.empty(s.gt.height, s.gt.width)
        one_mask[s.id] = {"mask": mask}
        one_instance[s.id] = {"instances": [{"mask": mask, "score": 1.0}] if found and masks.area(mask) else []}
    got = {}
    for name, recs in (("mask", one_mask), ("inst", one_instance)):
        out = run(build_config(models=f"replay:{_write(tmp_path / f'{name}.jsonl', recs)}", suite=str(data.suite), splits="crowded",
                               data_root=data.root, out=tmp_path / f"one-{name}"), render=False).run_dir
        got[name] = results_of(out)[f"replay-{name}"]["crowded"]
    keys = [k for k in got["mask"] if k.startswith(("cgf1", "pmf1", "il_", "n_cgf1"))]
    assert keys and all(got["mask"][k] == got["inst"][k] for k in keys)
    assert Conventions(scoring="instances").to_dict()["scoring"] == "instances"


def test_the_gate_holds_il_mcc_to_the_same_points_as_every_metric(saco_run: tuple[Any, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """IL_MCC is a coefficient in [-1, 1]; --max-drop is in points: the gate compares it x100, so a fall of 0.1
    in MCC is a 10-point drop, not "within tolerance" of 0.5."""
    data, base = saco_run
    other = tmp_path / "other"
    other.mkdir()
    replay = _write(other / "found.jsonl", predictions(data, seed=2, leave_out=0))  # the same model name, other answers
    out = run(build_config(models=f"replay:{replay}", suite=str(data.suite), data_root=data.root, out=tmp_path / "run2"),
              render=False).run_dir
    was, now = (json.loads((d / "results.json").read_text())["results"]["replay-found"]["sa1b"]["il_mcc"] for d in (base, out))
    assert was - now > 0.05  # these answers are worse at telling present from absent
    capsys.readouterr()
    # against the metrics alone (a --metrics-only baseline): the drop decides
    assert main(["baseline", "save", str(base), "--to", str(tmp_path / "base.json"), "--metrics-only"]) == 0
    assert main(["gate", str(out), "--baseline", str(tmp_path / "base.json"), "--metric", "il_mcc", "--splits", "sa1b",
                 "--verify", "none"]) == 1
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if "IL_MCC x100" in line and "sa1b" in line)
    assert f"{100 * was:.2f}" in row and f"{100 * now:.2f}" in row and "FAIL (tolerance only)" in row
    # against the run (per-pair matches on both sides): the drop is bootstrapped over the pairs, in the same points
    main(["gate", str(out), "--baseline", str(base), "--metric", "il_mcc", "--splits", "sa1b", "--verify", "none"])
    row = next(line for line in capsys.readouterr().out.splitlines() if "IL_MCC x100" in line and "sa1b" in line)
    assert f"{100 * (now - was):+.2f}" in row and "within tolerance" not in row and "[" in row
