"""Hugging Face copies read from local files: a save_to_disk folder and parquet, faithful and not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_datasets import benchmark_rows, jpeg_bytes, write_refer
from PIL import Image

from harness import masks
from harness.data.conventions import Conventions
from harness.data.sources import SourceError
from harness.data.sources.filesource import DataWarning
from harness.data.sources.hf import HFSource
from harness.data.sources.refer import ReferSource

datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def test_refcoco_benchmark_from_disk_equals_the_refer_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    i64, f64, text = datasets.Value("int64"), datasets.Value("float64"), datasets.Value("string")
    seq = datasets.Sequence
    ann = {"id": i64, "image_id": i64, "iscrowd": i64, "category_id": i64, "area": f64, "bbox": seq(f64), "segmentation": seq(seq(f64))}
    sentence = {"sent_id": i64, "sent": text, "raw": text, "tokens": seq(text)}
    ref = {"ref_id": i64, "ann_id": i64, "image_id": i64, "category_id": i64, "split": text, "file_name": text, "sent_ids": seq(i64),
           "sentences": [sentence]}
    features = datasets.Features({
        "ref_list": [{"ann_info": ann, "ref_info": ref}],
        "image_info": {"id": i64, "height": i64, "width": i64, "file_name": text},
        "image": datasets.Image(),
    })
    dd = datasets.DatasetDict({"refcoco_unc_val": datasets.Dataset.from_list(benchmark_rows(), features=features)})
    dd.save_to_disk(str(root / "hf" / "refcoco-benchmark"))
    params = {"path": "hf/refcoco-benchmark", "layout": "refcoco_benchmark", "hf_split": "refcoco_unc_val", "dataset": "refcoco"}
    got = HFSource(params, Conventions(), root, tmp_path / "cache").samples("val")
    write_refer(root, images=False)
    want = ReferSource({"dataset": "refcoco"}, Conventions(), root, tmp_path / "cache").samples("val")
    assert [s.id for s in got] == [s.id for s in want]
    assert [s.expression for s in got] == [s.expression for s in want]
    assert [s.gt.mask for s in got] == [s.gt.mask for s in want] and [s.gt.overlap for s in got] == [s.gt.overlap for s in want]
    assert [s.gt.box for s in got] == [s.gt.box for s in want]
    assert all("unfaithful" not in s.meta for s in got)
    assert Image.open(got[0].image).size == (60, 40)


def test_mixed_splits_are_flagged(tmp_path: Path) -> None:
    rows = benchmark_rows("val")
    rows[0]["ref_list"][1]["ref_info"]["split"] = "train"
    (tmp_path / "d").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d" / "refcoco_unc_val-00000-of-00001.parquet")
    params = {"path": "d/refcoco_unc_val-*.parquet", "layout": "refcoco_benchmark"}
    with pytest.warns(DataWarning, match="another split"):
        got = HFSource(params, Conventions(), tmp_path, tmp_path / "cache").samples("val")
    assert [s.meta.get("mixed_split", False) for s in got] == [False, False, True]
    with pytest.warns(DataWarning, match="another split"):  # warned again from the cache
        HFSource(params, Conventions(), tmp_path, tmp_path / "cache").samples("val")


def ricky_rows(kind: str) -> list[dict[str, Any]]:
    rows = []
    for k in range(2):
        m = np.zeros((12, 10), dtype=bool)
        m[2 : 6 + k, 1:7] = True
        row = {"image": {"bytes": jpeg_bytes(12, 10, 40 * k), "path": None}, "text": f"the thing {k}", "mask": m.tolist(),
               "image_id": f"img{k}", "ann_id": f"img{k}", "img_height": 12, "img_width": 10}
        if kind == "refcoco":
            row.update(image_id=100 + k, ann_id=500 + k, bbox=[1.0, 2.0, 7.0, 6.0 + k])
        rows.append(row)
    return rows


@pytest.mark.parametrize("kind", ["refcoco", "reasonseg"])
def test_ricky_copies_warn_and_flag(tmp_path: Path, kind: str) -> None:
    rows = ricky_rows(kind)
    (tmp_path / "r").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r" / "test-00000-of-00001.parquet")
    params = {"path": "r", "layout": "ricky", "kind": kind, "dataset": "refcoco"}
    with pytest.warns(DataWarning, match="cannot give the reference ground truth"):
        got = HFSource(params, Conventions(sample_unit="object"), tmp_path, tmp_path / "cache").samples("val")
    assert all("unfaithful" in s.meta for s in got)
    assert np.array_equal(masks.decode(got[1].gt.mask), np.array(rows[1]["mask"]))
    if kind == "reasonseg":
        assert [s.id for s in got] == ["reasonseg/val/img0", "reasonseg/val/img1"] and "ignore regions" in got[0].meta["unfaithful"]
    else:
        assert [s.id for s in got] == ["refcoco/unc/val/100/500", "refcoco/unc/val/101/501"] and got[1].gt.box == (1.0, 2.0, 7.0, 7.0)
    rows[0]["mask"] = rows[0]["mask"][:-1]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r" / "test-00000-of-00001.parquet")
    with pytest.raises(SourceError, match=r"row 1: mask has 110 pixels, expected 12x10"):
        HFSource(params, Conventions(), tmp_path, tmp_path / "cache").samples("val")


def test_lmms_lab_flat_polygon_and_mixed_val(tmp_path: Path) -> None:
    rows = [{"question_id": "q1", "image": {"bytes": jpeg_bytes(20, 30), "path": "COCO_train2014_000000000001.jpg"},
             "question": "", "answer": ["left man", "man"], "segmentation": [2.0, 2.0, 20.0, 2.0, 20.0, 15.0, 2.0, 15.0],
             "bbox": [2.0, 2.0, 18.0, 13.0], "iscrowd": 0, "file_name": "COCO_train2014_000000000001.jpg"}]
    (tmp_path / "l").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "l" / "val-00000-of-00001.parquet")
    with pytest.warns(DataWarning) as caught:
        got = HFSource({"path": "l", "layout": "lmms_lab"}, Conventions(), tmp_path, tmp_path / "cache").samples("val")
    text = " ".join(str(w.message) for w in caught)
    assert "one flat polygon" in text and "mixed splits" in text
    assert [s.id for s in got] == ["refcoco/lmms/val/q1/0", "refcoco/lmms/val/q1/1"]
    assert got[0].meta["mixed_split"] and (got[0].gt.height, got[0].gt.width) == (20, 30)
    assert got[0].gt.box == (2.0, 2.0, 20.0, 15.0)


def test_bad_parameters_and_paths(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="needs a 'path'"):
        HFSource({"layout": "ricky"}, Conventions(), tmp_path, tmp_path).samples("val")
    with pytest.raises(SourceError, match="layout='nope'"):
        HFSource({"path": "x", "layout": "nope"}, Conventions(), tmp_path, tmp_path).samples("val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="neither a saved dataset"):
        HFSource({"path": "empty", "layout": "ricky"}, Conventions(), tmp_path, tmp_path).samples("val")
