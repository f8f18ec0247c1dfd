"""The index cache's format 2: ground truths read on demand, equal to parsed ones; old or torn files parsed again;
runs, results and reports the same as when every ground truth is held in memory."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_datasets import write_refer
from test_sources_refer import SPLITS, mini_suite, source

from harness import masks
from harness.cli import main
from harness.data.sources import filesource
from harness.data.sources.index_cache import CACHE_FORMAT
from harness.data.sources.lazy_gt import LazyGroundTruth
from harness.data.sources.refer import ReferSource
from harness.types import GroundTruth, Sample


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_refer(root)
    return root


def parsed(tree: Path, cache: Path, split: str) -> list[Sample]:
    """The split as the reader builds it, with no cache involved."""
    src = source(tree, cache)
    return src.build(split, src.spec(split))[0]


def fields_of(s: Sample) -> tuple[Any, ...]:
    g = s.gt
    return (s.id, s.image, s.expression, s.dataset, s.split, s.no_target, s.meta,
            g.mask, g.box, g.ignore, g.overlap, g.height, g.width, g.area)


def cache_files(cache: Path) -> list[Path]:
    return sorted((cache / "index" / "refer").glob("*.jsonl"))


def test_lazy_ground_truths_equal_parsed_ones_in_every_field(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for split in SPLITS:
        eager = parsed(tree, cache, split)
        first = source(tree, cache).samples(split)  # parsed, written, read back
        again = source(tree, cache).samples(split)  # from the file
        assert all(isinstance(s.gt, LazyGroundTruth) for s in first + again)
        assert [fields_of(s) for s in first] == [fields_of(s) for s in again] == [fields_of(s) for s in eager]
        assert [s.gt for s in again] == [s.gt for s in eager] and [s.gt for s in eager] == [s.gt for s in again]
        # the stored area is the mask's, worked out on its runs
        assert [s.gt.area for s in again] == [masks.area(s.gt.mask) for s in eager]
    # the tree's overlapping polygons and boxes are among what came back
    val = source(tree, cache).samples("refcoco_val")
    assert val[0].gt.overlap is not None and val[0].gt.box is not None
    # sentences of one object share one ground truth, as when parsed
    by_object: dict[str, set[int]] = {}
    for s in val:
        by_object.setdefault(s.meta["object"], set()).add(id(s.gt))
    assert all(len(ids) == 1 for ids in by_object.values())


def test_a_lazy_ground_truth_pickles_as_a_plain_one(tree: Path, tmp_path: Path) -> None:
    s = source(tree, tmp_path / "cache").samples("refcoco_val")[0]
    back = pickle.loads(pickle.dumps(s))
    assert type(back.gt) is GroundTruth and back.gt == s.gt and back == Sample(**{**vars_of(s), "gt": back.gt})


def vars_of(s: Sample) -> dict[str, Any]:
    return {name: getattr(s, name) for name in Sample.__dataclass_fields__}


def test_the_counts_are_not_held_by_the_samples(tree: Path, tmp_path: Path) -> None:
    """Only the header is read up front; a ground truth's line is read when its mask is used."""
    cache = tmp_path / "cache"
    source(tree, cache).samples("refcoco_val")
    samples = source(tree, cache).samples("refcoco_val")
    store = samples[0].gt._store  # type: ignore[attr-defined]
    assert not store._recent
    assert samples[0].gt.height and samples[0].gt.area >= 0 and not store._recent  # known without the line
    assert samples[0].gt.mask["counts"] and len(store._recent) == 1


@pytest.mark.parametrize("damage", ["cut", "grown", "old format", "not json"])
def test_a_torn_or_old_cache_file_is_parsed_again_and_rewritten(tree: Path, tmp_path: Path, damage: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    want = [fields_of(s) for s in source(tree, cache).samples("refcoco_val")]
    (path,) = cache_files(cache)
    data = path.read_bytes()
    header = json.loads(data.split(b"\n", 1)[0])
    if damage == "cut":  # a copy cut short: the last ground truth's line is missing
        path.write_bytes(data[:-5])
    elif damage == "grown":
        path.write_bytes(data + b"[]\n")
    elif damage == "old format":  # format 1: one JSON document, counts inside
        path.write_text(json.dumps({"cache_format": 1, "key": header["key"], "warnings": [], "images": header["images"],
                                    "gts": [], "samples": header["samples"]}))
    else:
        path.write_bytes(b"{not json\n" + data)
    builds = []
    real_build = ReferSource.build

    def counted(self: ReferSource, split: str, spec: dict[str, Any]) -> Any:
        builds.append(split)
        return real_build(self, split, spec)

    monkeypatch.setattr(ReferSource, "build", counted)
    assert [fields_of(s) for s in source(tree, cache).samples("refcoco_val")] == want
    assert builds == ["refcoco_val"]
    assert path.read_bytes() == data  # rewritten whole
    assert [fields_of(s) for s in source(tree, cache).samples("refcoco_val")] == want and builds == ["refcoco_val"]
    assert CACHE_FORMAT == 2 and header["cache_format"] == 2


def test_an_unwritable_cache_keeps_the_parsed_samples(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    want = [fields_of(s) for s in parsed(tree, cache, "refcoco_val")]
    monkeypatch.setattr(filesource, "save_index", lambda *a, **k: False)
    got = source(tree, cache).samples("refcoco_val")
    assert not cache_files(cache) and type(got[0].gt) is GroundTruth
    assert [fields_of(s) for s in got] == want


def _run(tmp_path: Path, tree: Path, name: str) -> Path:
    out = tmp_path / name / "run"
    suite = mini_suite(tmp_path / "mini.yaml")
    assert main(["run", "--models", "oracle-box,empty", "--suite", str(suite), "--data-root", str(tree), "--out", str(out)]) == 0
    return out


def test_runs_results_and_reports_are_the_same_as_with_every_ground_truth_in_memory(
        tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old path (no cache: every sample as parsed, its counts in memory) against the new (ground truths read
    on demand): the same scores in the logs, and of one run a byte-identical results.json and report."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    lazy = _run(tmp_path, tree, "lazy")
    assert cache_files(tmp_path / "cache")
    assert main(["report", str(lazy), "--data-root", str(tree)]) == 0
    results, html = (lazy / "results.json").read_bytes(), (lazy / "report" / "index.html").read_bytes()
    assert b"data:image/jpeg;base64," in html  # the gallery drew the images and masks
    with monkeypatch.context() as m:  # parsed every time, never cached
        m.setattr(filesource, "load_index", lambda *a, **k: None)
        m.setattr(filesource, "save_index", lambda *a, **k: False)
        eager = _run(tmp_path, tree, "eager")
        assert main(["report", str(lazy), "--data-root", str(tree)]) == 0
    assert (lazy / "results.json").read_bytes() == results
    assert (lazy / "report" / "index.html").read_bytes() == html
    for log in sorted(lazy.glob("*/*.jsonl")):
        scores = [(r["id"], r["score"]) for r in map(json.loads, log.read_text().splitlines())]
        other = eager / log.relative_to(lazy)
        assert scores == [(r["id"], r["score"]) for r in map(json.loads, other.read_text().splitlines())]


def test_many_samples_round_trip_over_several_row_lines(tmp_path: Path) -> None:
    """5,000 samples: rows on three lines, ground truths shared by pairs of samples, metadata of every kind."""
    from harness.data.sources.index_cache import load_index, save_index

    def gt(k: int) -> GroundTruth:
        m = masks.encode((np.arange(12 * 10).reshape(12, 10) % (k % 7 + 2)) == 0)
        return GroundTruth(mask=m, box=(0.0, 1.5, 9.0, float(k % 12)) if k % 3 else None,
                           ignore=masks.encode(np.eye(12, 10, dtype=bool)) if k % 5 == 0 else None)

    gts = [gt(k) for k in range(2500)]
    want = [Sample(id=f"d/val/{i}", image=str(tmp_path / "data" / f"{i // 4}.jpg"), expression=f"thing é {i % 9}", gt=gts[i // 2],
                   dataset="d", split="val", no_target=i % 11 == 0,
                   meta={"object": str(i // 2), "n": i, "flag": i % 2 == 0, "x": 1.0, "sent": f"thing é {i % 9}"} if i % 13 else {})
               for i in range(5000)]
    path = tmp_path / "cache" / "index" / "x" / "k.jsonl"
    assert save_index(path, "k", want, tmp_path / "data", tmp_path / "cache", ["a note"])
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1 + 3 + 2500
    got, notes = load_index(path, "k", tmp_path / "data", tmp_path / "cache")  # type: ignore[misc]
    assert notes == ["a note"]
    assert [fields_of(s) for s in got] == [fields_of(s) for s in want]
    assert [type(v) for s in got for v in s.meta.values()] == [type(v) for s in want for v in s.meta.values()]
    assert got[0].gt is got[1].gt and got[1].gt is not got[2].gt
    assert load_index(path, "other key", tmp_path / "data", tmp_path / "cache") is None


def test_results_read_no_ground_truth_and_the_report_only_the_gallerys(tree: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """results.json (slices included) needs each ground truth's area only, known from the header; the report reads
    the lines of the samples its gallery draws, and nothing is read to decide what the gallery shows."""
    from harness.data.sources.lazy_gt import GroundTruthStore
    from harness.publish.report import gallery
    from harness.run import finish

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["run", "--models", "empty", "--suite", str(mini_suite(tmp_path / "mini.yaml")), "--data-root", str(tree),
                 "--out", str(run), "--no-report"]) == 0
    reads: list[tuple[str, int]] = []
    real_fields = GroundTruthStore.fields

    def counted(self: GroundTruthStore, i: int, size: list[int]) -> Any:
        reads.append((phase[0], i))
        return real_fields(self, i, size)

    phase = ["start"]
    monkeypatch.setattr(GroundTruthStore, "fields", counted)
    real_results, real_build = finish.write_results, gallery.build_entries

    def results(*a: Any, **k: Any) -> Any:
        phase[0] = "results"
        try:
            return real_results(*a, **k)
        finally:
            phase[0] = "after results"

    def build(*a: Any, **k: Any) -> Any:
        phase[0] = "gallery"
        try:
            return real_build(*a, **k)
        finally:
            phase[0] = "after gallery"

    monkeypatch.setattr(finish, "write_results", results)
    monkeypatch.setattr(gallery, "build_entries", build)
    assert main(["report", str(run), "--data-root", str(tree), "--verify", "none"]) == 0
    assert reads and {p for p, _ in reads} == {"gallery"}
    # Re-deriving stored scores from their masks reads the ground truth of the lines it draws, before the results.
    reads.clear()
    phase[0] = "start"
    assert main(["report", str(run), "--data-root", str(tree), "--verify", "2"]) == 0
    assert {p for p, _ in reads} == {"start", "gallery"} and len({i for p, i in reads if p == "start"}) <= 2
