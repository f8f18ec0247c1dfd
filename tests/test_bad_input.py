"""Bad input gets a clear error naming the file and the problem, never a traceback or silent loss."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import write_suite
from PIL import Image

from harness import masks
from harness.cli import main
from harness.data.images import ImageError, load_image
from harness.data.suites import SuiteError, load_suite
from harness.records.store import StoreError
from harness.run.config import ConfigError, build_config
from harness.run.finish import report_run
from harness.run.runner import run

pytestmark = pytest.mark.usefixtures("isolated")


def _jpeg(path: Path) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_images(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    data = _jpeg(good)
    assert load_image(good).shape == (64, 80, 3)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"truncated\.jpg is corrupt or truncated"):
        load_image(truncated)
    with pytest.raises(ImageError, match=r"missing\.jpg does not exist"):
        load_image(tmp_path / "missing.jpg")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match=r"notes\.png is not a readable image file"):
        load_image(text)


def test_rle(tmp_path: Path) -> None:
    rle = masks.encode(np.ones((2, 2), np.uint8))
    with pytest.raises(masks.MaskError, match=r"sample x: RLE size \[2, 2\] does not match the image size \[3, 3\]"):
        masks.validate(rle, 3, 3, "sample x")
    with pytest.raises(masks.MaskError, match=r"RLE counts are malformed: character"):
        masks.validate({"size": [3, 3], "counts": "\x7f\x7f\x7f"}, 3, 3, "sample y")
    with pytest.raises(masks.MaskError, match="must be a COCO RLE object"):
        masks.validate(np.ones((3, 3)), 3, 3, "sample z")


def test_suite_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsplits: [unclosed\n")
    with pytest.raises(SuiteError, match=r"bad\.yaml: malformed YAML"):
        load_suite(str(bad))
    bad.write_text("name: x\nversion: 1\nsplits: {val: {}}\n")
    with pytest.raises(SuiteError, match=r"bad\.yaml: missing required field 'source'"):
        load_suite(str(bad))
    bad.write_text("name: x\nversion: 1\nsource: {format: shapes}\nsplits: {val: {}}\nconventions: {empty_union: maybe}\n")
    with pytest.raises(SuiteError, match=r"bad\.yaml: conventions: convention empty_union='maybe' is not one of one, zero, drop"):
        load_suite(str(bad))
    assert main(["run", "--suite", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.yaml" in err and "Traceback" not in err


def test_config_files(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("models: [a, b\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: malformed YAML"):
        build_config(config_file=cfg)
    cfg.write_text("modles: {empty: {}}\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown key\(s\) modles"):
        build_config(config_file=cfg)
    cfg.write_text("models: {mine: {adapter: empty, extra: 1}}\n")
    with pytest.raises(ConfigError, match="model 'mine' takes only"):
        build_config(config_file=cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(config_file=tmp_path / "nope.yaml")


def test_run_directory_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(build_config(models="empty", suite=str(write_suite(tmp_path, val=1, test=1)), out=out), render=False)
    manifest = out / "manifest.json"
    good = manifest.read_text()
    manifest.write_text(good[: len(good) // 2])
    with pytest.raises(StoreError, match=r"manifest\.json: malformed JSON at line"):
        report_run(out)
    manifest.write_text(good)
    log = out / "empty" / "val.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(["{broken\n", *lines]))
    with pytest.raises(StoreError, match=r"val\.jsonl:1: corrupt record"):
        report_run(out)
    with pytest.raises(StoreError, match="not a run directory"):
        report_run(tmp_path)


def test_model_text_with_markup_is_escaped_in_the_report(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=1, test=1)
    out = tmp_path / "run"
    run(build_config(models="oracle-box", suite=str(suite), splits="val", out=out), render=False)
    from harness.records.store import read_records

    first = read_records(out / "oracle-box" / "val.jsonl")[0]
    replay = tmp_path / "evil.jsonl"
    text = "<think><script>alert('x')</script><img src=x onerror=alert(1)></think><answer>{}</answer>"
    replay.write_text(json.dumps({"id": first["id"], "mask": None, "text": text, "error": "<b>boom</b>"}) + "\n")
    report = run(build_config(models=f"replay:{replay}", suite=str(suite), splits="val", out=out)).report_path
    assert report is not None
    html = report.read_text()
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>boom</b>" not in html
    assert "&lt;script&gt;alert(" in html and "&lt;b&gt;boom&lt;/b&gt;" in html


def test_malformed_rle_counts_fail_their_sample_in_bounded_time(tmp_path: Path) -> None:
    # pycocotools reads past such strings (merge never returned on "!!!!notrle"), so the run
    # goes in a subprocess under a timeout: on unchecked code the test fails instead of hanging.
    import subprocess
    import sys

    from harness.records.store import read_records

    suite = write_suite(tmp_path, val=1, test=1)
    out = tmp_path / "run"
    run(build_config(models="oracle-box", suite=str(suite), splits="val", out=out), render=False)
    first, second = read_records(out / "oracle-box" / "val.jsonl")[:2]
    h, w = first["prediction"]["mask"]["size"]
    truncated = masks.encode(np.eye(h, w, dtype=bool))["counts"][:-2]
    replay = tmp_path / "bad.jsonl"
    replay.write_text(json.dumps({"id": first["id"], "mask": {"size": [h, w], "counts": "!!!!notrle"}}) + "\n"
                      + json.dumps({"id": second["id"], "mask": {"size": [h, w], "counts": truncated}}) + "\n")
    argv = ["run", "--models", f"replay:{replay}", "--suite", str(suite), "--splits", "val", "--out", str(tmp_path / "r2")]
    code = f"import sys; from harness.cli import main; sys.exit(main({argv!r}))"
    done = subprocess.run([sys.executable, "-c", code], timeout=120, capture_output=True, text=True)
    assert done.returncode == 4, done.stderr  # every sample failed: a distinct non-zero exit, the log kept
    recs = {r["id"]: r for r in read_records(tmp_path / "r2" / "replay-bad" / "val.jsonl")}
    assert recs[first["id"]]["prediction"]["mask"] is None and recs[second["id"]]["prediction"]["mask"] is None
    assert f"{replay}:1: RLE counts are malformed: character '!'" in recs[first["id"]]["prediction"]["error"]
    assert f"{replay}:2: RLE counts " in recs[second["id"]]["prediction"]["error"]


def test_compressed_counts_decode_as_pycocotools_does() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        m = rng.random((h, w)) < rng.random()
        runs = masks.compressed_counts(masks.encode(m)["counts"])
        flat = m.T.reshape(-1)  # column-major, as COCO RLE
        expect = [len(g) for g in np.split(flat, np.flatnonzero(np.diff(flat.astype(int))) + 1)]
        expect = expect if not flat[0] else [0, *expect]
        assert runs == expect


def test_long_counts_are_checked_as_the_character_loop_checks_them() -> None:
    """validate reads counts of 48 characters and more with numpy (masks._runs_total_fast): the same
    total and sign as compressed_counts, the same verdict and message, on real masks and on junk."""
    rng = np.random.default_rng(1)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(20, 120, 2))
        m = rng.random((h, w)) < rng.random() * 0.2
        if rng.random() < 0.5:  # blobs: numbers of two and three groups
            m = np.zeros((h, w), bool)
            m[int(rng.integers(0, h // 2)):int(rng.integers(h // 2, h)), int(rng.integers(0, w // 2)):int(rng.integers(w // 2, w))] = True
        rle = masks.encode(m)
        runs = masks.compressed_counts(rle["counts"])
        assert masks._runs_total_fast(rle["counts"]) == (sum(runs), False) == (h * w, False)
        assert masks.validate(rle, h, w, "s") == rle
    digits = [chr(c) for c in range(48, 112)]
    for k in range(3000):
        # Every number one group (digits '0'..'O' only) every third string, the shortcut for that case.
        counts = "".join(rng.choice(digits[:32] if k % 3 == 1 else digits, int(rng.integers(48, 90))))
        if k % 5 == 0:  # a stray character, or a dangling continuation at the end
            counts = counts[:20] + str(rng.choice(["!", "~", "\x7f", "é"])) + counts[21:] if k % 2 else counts + "P"
        try:
            runs = masks.compressed_counts(counts)
            expect: tuple[int, bool] | None = (sum(runs), bool(runs) and min(runs) < 0)
        except ValueError:
            expect = None
        fast = masks._runs_total_fast(counts)
        if fast is None and expect is not None:  # left to the loop: only for a number of over 7 groups
            assert any(len(t) > 7 for t in re.findall(r"[P-o]*[0-O]", counts)), counts
        else:
            assert fast == expect, counts
        size = sum(runs) if expect is not None and expect[0] > 0 and not expect[1] else 7
        try:
            masks.validate({"size": [1, size], "counts": counts}, 1, size, "s")
            verdict = "ok"
        except masks.MaskError as exc:
            verdict = str(exc)
        if expect is None:
            assert "RLE counts are malformed" in verdict
        elif expect[1] or expect[0] != size:
            assert verdict == (f"s: RLE counts have runs summing to {expect[0]} pixels (negative: {expect[1]}), "
                               f"not the image's 1 x {size} = {size}")
        else:
            assert verdict == "ok"
