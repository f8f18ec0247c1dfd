"""``harness data fetch`` against a stand-in Hub on 127.0.0.1 (tests/helper_hub.py): huggingface_hub's real
download code, a plain URL with Range, verification, resumption, and the pages a human must visit."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from helper_datasets import COCO_DIR, REFER_COUNTS, REFER_IMAGES, benchmark_rows, coco_name, jpeg, write_refer
from helper_hub import StandInHub, stand_in_hub

from harness.cli import main
from harness.data import fetch as fetch_module
from harness.data.suites import SuiteError, load_suite

pytest.importorskip("huggingface_hub")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

REPO = "jxu124/refcoco-benchmark"
PARQUET = "data/refcoco_unc_val-00000-of-00001.parquet"
SUITES = Path(__file__).resolve().parents[1] / "suites"


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def refcoco_val_suite(tmp_path: Path) -> Path:
    """The built-in refcoco suite, fetch table included, cut to refcoco_val with the tiny tree's counts."""
    raw = yaml.safe_load((SUITES / "refcoco.yaml").read_text())
    keep = "refcoco_val"
    raw["splits"] = {keep: {**raw["splits"][keep], "counts": REFER_COUNTS["val"]}}
    raw["default_splits"] = [keep]
    raw["published"] = []
    raw["source"]["splits"] = {keep: raw["source"]["splits"][keep]}
    raw["fetch"]["source"]["splits"] = {keep: raw["fetch"]["source"]["splits"][keep]}
    raw["fetch"]["files"][0]["files"] = {keep: raw["fetch"]["files"][0]["files"][keep]}
    path = tmp_path / "refcoco-val.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    with stand_in_hub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        server.repos[REPO] = {PARQUET: parquet_bytes(benchmark_rows("val")), "README.md": b"# refcoco-benchmark\n"}
        yield server


def test_fetch_then_check_then_run(hub: StandInHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite, root = refcoco_val_suite(tmp_path), tmp_path / "data"
    # Before: the run's error names the command that gets the data.
    assert main(["run", "--models", "empty", "--suite", str(suite), "--data-root", str(root), "--out", str(tmp_path / "r0"),
                 "--no-report"]) == 2
    assert f"`harness data fetch {suite}` downloads a faithful copy" in capsys.readouterr().err

    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"[new] hub/refcoco-benchmark/{PARQUET}" in out and "sha256 verified" in out and "all 1 split(s) ok" in out
    final = root / "hub" / "refcoco-benchmark" / PARQUET
    assert final.read_bytes() == hub.repos[REPO][PARQUET]
    assert not (root / "hub" / "refcoco-benchmark" / "README.md").exists()  # only what the split needs

    assert main(["data", "check", "--suite", str(suite), "--data-root", str(root)]) == 0
    assert "reading the copy `harness data fetch` downloads (format hf)" in capsys.readouterr().out
    out_dir = tmp_path / "run"
    assert main(["run", "--models", "shapes-reasoner,empty", "--suite", str(suite), "--data-root", str(root),
                 "--out", str(out_dir), "--no-report"]) == 0
    results = json.loads((out_dir / "results.json").read_text())["results"]
    assert results["empty"]["refcoco_val"]["n"] == REFER_COUNTS["val"]["expressions"]
    assert results["empty"]["refcoco_val"]["ciou"] == 0.0
    # The ids are the REFER reader's: a run on the Hub copy pairs with a run on the original files.
    ids = [json.loads(line)["id"] for line in (out_dir / "empty" / "refcoco_val.jsonl").read_text().splitlines()]
    assert ids[0] == "refcoco/unc/val/1/11"

    # A second fetch verifies what is there and downloads nothing.
    before = len([r for r in hub.requests if "/resolve/" in r[1] and r[0] == "GET"])
    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 0
    assert "(verified)" in capsys.readouterr().out
    assert len([r for r in hub.requests if "/resolve/" in r[1] and r[0] == "GET"]) == before


def test_the_suites_own_files_are_not_fetched_over(hub: StandInHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite, root = refcoco_val_suite(tmp_path), tmp_path / "data"
    write_refer(root)  # the REFER files and COCO images: a run reads these, so the Hub copy is not fetched
    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 0
    assert "its own refer files are under" in capsys.readouterr().out
    assert not (root / "hub").exists() and not [r for r in hub.requests if "/resolve/" in r[1]]


def test_a_dropped_connection_is_resumed(hub: StandInHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    # huggingface_hub writes whole chunks (10 MB) and resumes after the last one written: 1 kB chunks here,
    # so a drop halfway through a 13 kB file leaves some on disk to resume from.
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    suite, root = refcoco_val_suite(tmp_path), tmp_path / "data"
    half = len(hub.repos[REPO][PARQUET]) // 2
    hub.drop_after[PARQUET] = half
    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 0
    assert (root / "hub" / "refcoco-benchmark" / PARQUET).read_bytes() == hub.repos[REPO][PARQUET]
    gets = [r for r in hub.requests if r[0] == "GET" and r[1].endswith(PARQUET)]
    assert len(gets) == 2 and gets[0][2] is None
    resumed_at = int(str(gets[1][2]).removeprefix("bytes=").removesuffix("-"))  # resumed where the connection dropped
    assert 0 < resumed_at <= half


def test_a_copy_that_does_not_verify_is_named_and_removed(hub: StandInHub, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    suite, root = refcoco_val_suite(tmp_path), tmp_path / "data"
    good = hub.repos[REPO][PARQUET]
    hub.serve_instead[PARQUET] = good[:-8] + b"corrupt!"  # same size, other bytes
    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"{REPO}/{PARQUET}" in err and "does not verify: sha256" in err and hashlib.sha256(good).hexdigest() in err
    assert not (root / "hub" / "refcoco-benchmark" / PARQUET).exists()
    assert not [p for p in (root / fetch_module.STAGING).rglob("*.parquet")]
    del hub.serve_instead[PARQUET]
    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 0


def test_a_gated_repository_needs_hf_token(hub: StandInHub, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    suite, root = refcoco_val_suite(tmp_path), tmp_path / "data"
    hub.gated[REPO] = "hf_secret"
    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"{REPO} is gated: accept its terms at https://huggingface.co/datasets/{REPO}" in err and "HF_TOKEN" in err
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 0


def test_an_unreachable_hub_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert main(["data", "fetch", "refcoco-m", "--data-root", str(tmp_path / "data")]) == 2
    assert f"cannot reach http://127.0.0.1:{port}" in capsys.readouterr().err


def test_without_huggingface_hub_the_extra_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as when it is not installed
    assert main(["data", "fetch", "refcoco-m", "--data-root", str(tmp_path)]) == 2
    assert "needs huggingface_hub: pip install 'harness-seg[hf]'" in capsys.readouterr().err


def test_a_suite_without_a_faithful_copy_names_the_page_and_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "fetch", "reasonseg", "--data-root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "https://github.com/dvlab-research/LISA#dataset" in err
    assert f"put it at {tmp_path / 'data' / 'reason_seg' / 'ReasonSeg'}" in err
    assert not (tmp_path / "data" / "reason_seg").exists()


def test_missing_refcoco_names_data_fetch(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert main(["data", "check", "--suite", "refcoco", "--splits", "refcoco_val", "--data-root", str(tmp_path)]) == 1
    assert "`harness data fetch refcoco` downloads it" in capsys.readouterr().out
    # reasonseg cannot be downloaded by the command: no such advice
    pytest.importorskip("cv2")
    assert main(["data", "check", "--suite", "reasonseg", "--splits", "val", "--data-root", str(tmp_path)]) == 1
    assert "harness data fetch" not in capsys.readouterr().out


def url_suite(tmp_path: Path, url: str, sha256: str) -> Path:
    raw = yaml.safe_load((SUITES / "refcoco.yaml").read_text())
    raw["splits"] = {"refcoco_val": {"counts": REFER_COUNTS["val"]}}
    raw["default_splits"] = ["refcoco_val"]
    raw["published"] = []
    raw["source"]["splits"] = {"refcoco_val": raw["source"]["splits"]["refcoco_val"]}
    raw["fetch"] = {"files": [{"url": url, "sha256": sha256, "extract": "zip", "into": "refer_seg/images/mscoco/images",
                               "path": f"{COCO_DIR}/", "what": "the images"}]}
    path = tmp_path / "refcoco-url.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_url_download_resumes_in_a_later_run(hub: StandInHub, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root, made = tmp_path / "data", tmp_path / "made"
    write_refer(root, images=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, (h, w) in REFER_IMAGES.items():
            z.write(jpeg(made / coco_name(i), h, w, seed=i), f"train2014/{coco_name(i)}")
    archive = buf.getvalue()
    hub.files["train2014.zip"] = archive
    suite = url_suite(tmp_path, f"{hub.endpoint}/files/train2014.zip", hashlib.sha256(archive).hexdigest())
    monkeypatch.setattr(fetch_module, "URL_ATTEMPTS", 1)  # give up at the first dropped connection
    cut = len(archive) // 3
    hub.drop_after["train2014.zip"] = cut
    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 2
    assert "run the same command again to resume" in capsys.readouterr().err
    part = root / fetch_module.STAGING / "url" / "train2014.zip.part"
    assert part.stat().st_size == cut and not (root / COCO_DIR).exists()

    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 0
    assert "all 1 split(s) ok" in capsys.readouterr().out
    assert ("GET", "/files/train2014.zip", f"bytes={cut}-") in hub.requests
    assert sorted(p.name for p in (root / COCO_DIR).iterdir()) == sorted(coco_name(i) for i in REFER_IMAGES)
    assert not part.exists() and not (root / fetch_module.STAGING / "url" / "train2014.zip").exists()

    # a published checksum that the bytes do not match: named, nothing kept under the final name
    (root / COCO_DIR).rename(tmp_path / "moved")
    suite = url_suite(tmp_path, f"{hub.endpoint}/files/train2014.zip", "0" * 64)
    assert main(["data", "fetch", str(suite), "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "train2014.zip does not verify: sha256" in err and not (root / COCO_DIR).exists() and not part.exists()


def test_the_fetch_table_leaves_the_fingerprint_alone(tmp_path: Path) -> None:
    raw = yaml.safe_load((SUITES / "refcoco.yaml").read_text())
    del raw["fetch"]
    bare = tmp_path / "refcoco.yaml"
    bare.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert load_suite(str(bare)).fingerprint == load_suite("refcoco").fingerprint


def test_bad_fetch_tables_name_the_file(tmp_path: Path) -> None:
    raw = yaml.safe_load((SUITES / "refcoco-m.yaml").read_text())
    raw["fetch"]["files"][0]["into"] = "../outside"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(SuiteError, match=r"bad.yaml: fetch.files\[0\]: '../outside' must be a path under the data root"):
        load_suite(str(bad))
    raw["fetch"]["files"][0].update(into="ricky", hub="Ricky06662/ReasonSeg_val")  # an unfaithful copy is never fetched
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(SuiteError, match="Ricky06662/ReasonSeg_val is a copy that cannot give the reference ground truth"):
        load_suite(str(bad))
