"""The RefCOCO-M reader on parquet rows with embedded images (the dataset repository's format) and on JSON rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helper_datasets import COCO_DIR, coco_name, jpeg, refcoco_m_rows

from harness.data.conventions import Conventions
from harness.data.images import load_image
from harness.data.sources import SourceError
from harness.data.sources.refcoco_m import RefCocoMSource
from harness.data.suites import load_suite

SUITE = load_suite("refcoco-m")


def write_parquet(root: Path) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    folder = root / "refcoco-m" / "data"
    folder.mkdir(parents=True)
    rows = refcoco_m_rows()
    pq.write_table(pa.Table.from_pylist(rows[:1]), folder / "validation-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[1:]), folder / "validation-00001-of-00002.parquet")
    return folder


def test_parquet_rows_with_embedded_images(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_parquet(root)
    cache = tmp_path / "cache"
    samples = RefCocoMSource(SUITE.source_params, SUITE.conventions, root, cache).samples("val")
    assert [s.id for s in samples] == ["refcoco-m/val/11/110/0", "refcoco-m/val/11/111/0", "refcoco-m/val/11/111/1",
                                       "refcoco-m/val/12/120/0"]
    assert [s.expression for s in samples[:3]] == ["person 0", "person 1", "the person 1"]
    rows = refcoco_m_rows()
    assert samples[1].gt.mask == rows[0]["samples"][1]["mask"]
    assert samples[1].gt.box == (2.0, 3.0, 9.0, 8.0)
    assert Path(samples[0].image).is_relative_to(cache) and Path(samples[0].image).name == coco_name(11)
    assert load_image(samples[0].image).shape == (20, 24, 3)
    counts = {"images": len({s.image for s in samples}), "objects": len({s.meta["object"] for s in samples}), "expressions": len(samples)}
    assert counts == {"images": 2, "objects": 3, "expressions": 4}
    # the extracted images are checked on a cached load; gone -> parsed (and extracted) again
    Path(samples[0].image).unlink()
    again = RefCocoMSource(SUITE.source_params, SUITE.conventions, root, cache).samples("val")
    assert Path(again[0].image).is_file()


def test_json_rows_without_images_use_the_coco_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    rows = refcoco_m_rows()
    for r in rows:
        r.pop("image")
        jpeg(root / COCO_DIR / r["file_name"], 20, 24)
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = RefCocoMSource({"annotation": "rows.jsonl"}, Conventions(sample_unit="object"), root, tmp_path / "cache")
    samples = src.samples("val")
    assert [s.id for s in samples] == ["refcoco-m/val/11/110/0", "refcoco-m/val/11/111/0", "refcoco-m/val/12/120/0"]
    assert samples[0].image == str(root / COCO_DIR / coco_name(11))


def test_malformed_rows_are_named(tmp_path: Path) -> None:
    root = tmp_path / "data"
    rows = refcoco_m_rows()
    for r in rows:
        r.pop("image")
    rows[1]["samples"][0]["mask"] = {"counts": "zz", "size": [16, 16]}
    (root).mkdir()
    (root / "rows.json").write_text(json.dumps(rows))
    with pytest.raises(SourceError, match=r"rows\.json: row 2.*(corrupt counts|cannot be decoded|RLE counts are malformed)"):
        RefCocoMSource({"annotation": "rows.json"}, Conventions(), root, tmp_path / "cache").samples("val")
    (root / "rows.json").write_text("[{\"image_id\": 1}]")
    with pytest.raises(SourceError, match=r"rows\.json: row 1 lacks"):
        RefCocoMSource({"annotation": "rows.json"}, Conventions(), root, tmp_path / "cache").samples("val")
    with pytest.raises(SourceError, match=r"no file matches .*refcoco-m/data/\*\.parquet"):
        RefCocoMSource(SUITE.source_params, SUITE.conventions, root, tmp_path / "cache").samples("val")
    bad = root / "refcoco-m" / "data"
    bad.mkdir(parents=True)
    (bad / "validation-00000-of-00001.parquet").write_bytes(b"PAR1 not really")
    pytest.importorskip("pyarrow")
    with pytest.raises(SourceError, match=r"validation-00000-of-00001\.parquet: not a readable parquet file"):
        RefCocoMSource(SUITE.source_params, SUITE.conventions, root, tmp_path / "cache").samples("val")
