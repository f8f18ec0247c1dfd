"""The SA-Co/Gold reader on generated data in the real format (three annotator files per subset, JPEGs), the
saco-gold suite file, and ``harness data check`` / ``data layout`` for it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helper_saco import ANNOTATORS, write_saco

from harness import masks
from harness.cli import main
from harness.data.samples import data_digests, load_samples
from harness.data.sources import SourceError
from harness.data.suites import load_suite
from harness.types import Sample


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    return write_saco(tmp_path / "data")


def _files(data, split: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(p.read_text()) for p in data.annotation_files(split)]


def _samples(data, split: str = "crowded") -> list[Sample]:  # type: ignore[no-untyped-def]
    return load_samples(load_suite(str(data.suite)), [split], data.root)[split]


def test_one_sample_per_pair_with_every_annotators_instances(data) -> None:  # type: ignore[no-untyped-def]
    samples = _samples(data)
    files = _files(data, "crowded")
    assert [s.id for s in samples] == [f"saco-gold/crowded/{img['id']}" for img in files[0]["images"]]
    assert [s.expression for s in samples] == [img["text_input"] for img in files[0]["images"]]
    by_id = {s.meta["pair_id"]: s for s in samples}
    for s in samples:
        img = next(i for i in files[0]["images"] if i["id"] == s.meta["pair_id"])
        assert s.image == str(data.root / "saco-gold" / "images" / "metaclip" / img["file_name"])
        assert (s.gt.height, s.gt.width) == (img["height"], img["width"])
        anns = [[a for a in f["annotations"] if a["image_id"] == s.meta["pair_id"]] for f in files]
        assert s.meta["annotations"] == [len(a) for a in anns]
        assert s.no_target == (not anns[0])
        if s.gt.instances is None:  # some annotator did not annotate it exhaustively: no instance score
            assert not s.meta["instance_exhaustive"]
            continue
        # crowd segments are not instances; the rest keep their file order and their pixels
        assert [len(i) for i in s.gt.instances] == [sum(1 for a in found if not a["iscrowd"]) for found in anns]
        first = [a for a in anns[0] if not a["iscrowd"]]
        for got, ann in zip(s.gt.instances[0], first):
            assert got == ann["segmentation"]
    # the mask is the first annotator's union, crowd segments included
    bead = next(s for s in samples if s.expression == "bead")
    assert masks.area(bead.gt.mask) == sum(masks.area(m) for m in bead.gt.instances[0])  # type: ignore[index]
    assert len(bead.gt.instances[0]) == 12 and len(bead.gt.instances[2]) == 8  # type: ignore[index]  # c: a crowd segment of 4
    # a crowd segment alone: that annotator has no instance
    giraffe = next(s for s in samples if s.expression == "giraffe")
    assert giraffe.meta["annotations"] == [0, 0, 1] and giraffe.gt.instances == ((), (), ()) and giraffe.no_target
    assert sum(1 for s in by_id.values() if not s.meta["instance_exhaustive"]) == 1
    assert {s.split for s in samples} == {"crowded"} and {s.dataset for s in samples} == {"saco-gold"}


def test_polygons_and_uncompressed_rle_are_rasterised_as_coco_does(data) -> None:  # type: ignore[no-untyped-def]
    from pycocotools import mask as mask_utils

    samples = {s.meta["pair_id"]: s for s in _samples(data)}
    files = _files(data, "crowded")
    checked = set()
    for k, f in enumerate(files):
        for ann in f["annotations"]:
            seg, s = ann["segmentation"], samples[ann["image_id"]]
            if (isinstance(seg, dict) and isinstance(seg["counts"], str)) or ann["iscrowd"] or s.gt.instances is None:
                continue
            h, w = s.gt.height, s.gt.width
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if isinstance(seg, list) else mask_utils.frPyObjects(seg, h, w)
            expected = mask_utils.decode(rle).astype(bool)  # what COCO's annToRLE + decode give
            assert any(np.array_equal(masks.decode(m), expected) for m in s.gt.instances[k])
            checked.add("polygon" if isinstance(seg, list) else "uncompressed")
    assert checked == {"polygon", "uncompressed"}


def test_the_split_is_cached_with_its_instances(data) -> None:  # type: ignore[no-untyped-def]
    first = _samples(data)
    again = _samples(data)  # read back from the index cache: ground truths read on demand
    assert type(again[0].gt).__name__ == "LazyGroundTruth"
    assert [(s.id, s.gt.instances, s.gt.mask, s.no_target, s.meta) for s in again] == \
        [(s.id, s.gt.instances, s.gt.mask, s.no_target, s.meta) for s in first]
    assert load_samples(load_suite(str(data.suite)), ["sa1b"], data.root)["sa1b"][0].image.startswith(
        str(data.root / "saco-gold" / "images" / "sa1b"))


def test_the_data_digest_follows_every_annotator_file(data) -> None:  # type: ignore[no-untyped-def]
    suite = load_suite(str(data.suite))
    before = data_digests(suite, ["crowded", "sa1b"], data.root)
    path = data.annotation_files("crowded")[2]  # annotator c
    doc = json.loads(path.read_text())
    doc["images"][0]["is_instance_exhaustive"] = 0
    path.write_text(json.dumps(doc))
    after = data_digests(suite, ["crowded", "sa1b"], data.root)
    assert after["crowded"] != before["crowded"] and after["sa1b"] == before["sa1b"]
    assert _samples(data)[0].gt.instances is None  # no longer exhaustive for every annotator


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda docs: docs[1]["images"].pop(), r"_b_release_test\.json: its image-phrase pairs are not those of gold_crowded_merged_a"),
        (lambda docs: docs[2]["images"][0].update(text_input="zebra"), r"_c_release_test\.json: pair 1001 is .* 'zebra' here"),
        (lambda docs: docs[0]["annotations"][0].update(image_id=5), r"_a_release_test\.json: annotations\[0\]: image_id 5 is not"),
        (lambda docs: docs[0]["images"][0].pop("is_instance_exhaustive"), r"images\[0\] lacks is_instance_exhaustive"),
        (lambda docs: docs[0]["annotations"][0]["segmentation"].update(size=[3, 3]), r"annotations\[0\]: RLE size \[3, 3\] does not"),
        (lambda docs: docs[0]["images"][1].update(id=1001), r"images\[1\]: pair id 1001 appears twice"),
        (lambda docs: [d["images"][0].update(file_name="../../etc/x.jpg") for d in docs],
         r"pair 1001: file_name '\.\./\.\./etc/x\.jpg' must be"),
    ],
)
def test_malformed_files_are_named(data, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    paths = data.annotation_files("crowded")
    docs = [json.loads(p.read_text()) for p in paths]
    edit(docs)
    for p, doc in zip(paths, docs):
        p.write_text(json.dumps(doc))
    with pytest.raises(SourceError, match=match):
        _samples(data)


def test_data_check_and_layout(data, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["data", "check", "--suite", str(data.suite), "--data-root", str(data.root)]) == 0
    out = capsys.readouterr().out
    assert f"crowded: 7 images, 14 objects, {data.counts['crowded']} expressions: ok" in out and "all 2 split(s) ok" in out
    (data.root / "saco-gold" / "images" / "sa1b" / "1" / "sa1b_0001.jpg").unlink()
    assert main(["data", "check", "--suite", str(data.suite), "--data-root", str(data.root), "--splits", "sa1b"]) == 1
    assert "sa1b_0001.jpg" in capsys.readouterr().out
    # the real suite names the same files; its official counts are the README's
    assert main(["data", "check", "--suite", "saco-gold", "--data-root", str(data.root), "--splits", "crowded", "--no-decode"]) == 1
    assert f"expressions: {data.counts['crowded']} found, the official count is 20687" in capsys.readouterr().out

    assert main(["data", "layout", "saco-gold", "--data-root", str(data.root)]) == 0
    out = capsys.readouterr().out
    for a in ANNOTATORS:
        assert f"gold_crowded_merged_{a}_release_test.json" in out and f"gold_wiki_common_merged_{a}_release_test.json" in out
    assert "metaclip/" in out and "sa1b/" in out and "[ok]" in out and "[MISSING]" in out
    assert "facebook/SACo-Gold" in out and "sa_co_gold.tar" in out and "gold-metaclip-merged-a-release-test" in out


def test_the_suite_file() -> None:
    suite = load_suite("saco-gold")
    assert list(suite.splits) == ["metaclip_nps", "sa1b_nps", "crowded", "fg_food", "fg_sports_equipment", "attributes", "wiki_common"]
    assert suite.average == tuple(suite.splits)
    assert sum(s["counts"]["expressions"] for s in suite.splits.values()) == 168202  # UPSTREAM-2026.md: 168,202 pairs
    conv = suite.conventions
    assert conv.scoring == "instances" and conv.instance_threshold == 0.5 and conv.exif == "ignore"
    assert conv.to_dict()["scoring"] == "instances" and "instance_threshold" not in conv.to_dict()  # the default is not written
    rows = {(p.model, p.split, p.metric): p.value for p in suite.published}
    assert rows[("SAM 3", "average", "cgf1")] == 54.06 and rows[("Human", "average", "cgf1")] == 72.8
    assert rows[("OWLv2* (partly trained on LVIS)", "average", "cgf1")] == 24.59 and rows[("Gemini 2.5", "average", "cgf1")] == 13.03
    assert rows[("SAM 3", "crowded", "il_mcc")] == 0.9 and rows[("SAM 3", "wiki_common", "pmf1")] == 60.85
    # the average rows are the mean of the subsets', as the README's Average column (up to its rounding)
    for model in ("SAM 3", "OWLv2* (partly trained on LVIS)", "Gemini 2.5"):
        subsets = [rows[(model, s, "cgf1")] for s in suite.splits]
        assert np.mean(subsets) == pytest.approx(rows[(model, "average", "cgf1")], abs=0.01)


def test_published_rows_are_the_readme_table(sam3_readme: str) -> None:
    """Each subset's published cgF1, IL_MCC and pmF1 are the numbers of the gold README's Results table."""
    import re

    columns = ["average", "metaclip_nps", "sa1b_nps", "crowded", "fg_food", "fg_sports_equipment", "attributes", "wiki_common"]
    rows = {(p.model, p.split, p.metric): p.value for p in load_suite("saco-gold").published}
    names = {"SAM 3": "SAM 3", "OWLv2*": "OWLv2* (partly trained on LVIS)", "Gemini 2.5": "Gemini 2.5"}
    found = 0
    for tr in re.findall(r"<tr>(.*?)</tr>", sam3_readme, flags=re.S):
        cells = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, flags=re.S)]
        if not cells or cells[0] not in names:
            continue
        values = [float(v) for v in cells[1:]]
        for k, split in enumerate(columns):
            for j, metric in enumerate(("cgf1", "il_mcc", "pmf1")):
                assert rows[(names[cells[0]], split, metric)] == values[3 * k + j], (cells[0], split, metric)
        found += 1
    assert found == 3


@pytest.fixture
def sam3_readme() -> str:
    from harness.modelkit.testing import checkout_or_skip
    from harness.modelkit.upstream import Upstream

    repo = checkout_or_skip(Upstream(name="SAM 3", repository="facebookresearch/sam3", env="HARNESS_SAM3_REPO", revision="99d02f2",
                                     marker="scripts/eval/gold/README.md", top_level=(), isolation=""))
    return (repo / "scripts" / "eval" / "gold" / "README.md").read_text(encoding="utf-8")
