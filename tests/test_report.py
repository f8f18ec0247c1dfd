"""The HTML report: numbers, plots, gallery, escaping of model text, and damaged logs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_runs import index_records
from PIL import Image

from harness import masks
from harness.data.conventions import Conventions
from harness.publish.report import render_report
from harness.publish.report.gallery import select
from harness.publish.report.plots import CURVE_THRESHOLDS, ScoreColumns
from harness.records.store import read_records
from harness.score.metrics import summarize
from harness.types import GroundTruth, Sample, SampleScore

H, W = 24, 32
EVIL = "<script>alert(1)</script> and <b>bold</b>"
MODELS = ("alpha", "beta<i>")  # a model name with markup in it must be escaped too
SPLIT = "val"


def _rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


def _score(gt: np.ndarray, pred: np.ndarray | None, parse_failed: bool = False) -> dict[str, Any]:
    failed = pred is None
    p = np.zeros_like(gt) if pred is None else pred
    inter, union = int((gt & p).sum()), int((gt | p).sum()) if not failed else int(gt.sum())
    inter = 0 if failed else inter
    iou = 0.0 if failed else (inter / (union + 1e-5) if union else 1.0)
    return SampleScore(inter, union, int(gt.sum()), int(p.sum()), iou, not gt.any(), not p.any(), failed, parse_failed).to_json()


def make_run(root: Path) -> tuple[Path, dict[str, dict[str, Sample]]]:
    """Two models, one split, six samples, hand-written results.json."""
    run = root / "run"
    run.mkdir(parents=True)
    image = root / "img.png"
    arr = np.zeros((H, W, 3), dtype=np.uint8)
    arr[..., 2] = 160
    arr[:, : W // 2, 0] = 200
    Image.fromarray(arr).save(image)

    empty = np.zeros((H, W), bool)
    gts = [_rect(2, 2, 12, 12), _rect(10, 5, 30, 20), _rect(0, 0, 8, 8), _rect(20, 10, 31, 23), _rect(5, 5, 25, 15), empty]
    preds: dict[str, list[np.ndarray | None]] = {
        "alpha": [_rect(2, 2, 12, 12), _rect(12, 5, 30, 20), _rect(4, 4, 8, 8), _rect(20, 10, 31, 23), _rect(0, 0, 4, 4), empty],
        "beta<i>": [_rect(3, 3, 12, 12), None, _rect(0, 0, 8, 8), _rect(0, 0, 10, 10), _rect(5, 5, 20, 15), _rect(1, 1, 3, 3)],
    }
    samples: dict[str, Sample] = {}
    for i, gt in enumerate(gts):
        sid = f"toy/{SPLIT}/{i:04d}"
        gt_rle = masks.encode(gt)
        samples[sid] = Sample(sid, str(image), f"the thing number {i}", GroundTruth(gt_rle), "toy", SPLIT, no_target=not gt.any())
    for model, plist in preds.items():
        (run / model).mkdir()
        lines = []
        for i, (sid, pred) in enumerate(zip(samples, plist)):
            failed = pred is None
            prediction = {
                "mask": None if pred is None else masks.encode(pred),
                "box": [1.0, 1.0, 9.0, 9.0] if i == 0 else None,
                "text": f"<think>{EVIL}</think><answer>[{i}]</answer>" if model != "alpha" else f"answer {i}",
                "reasoning": f"beta thinks: {EVIL}" if model != "alpha" else f"alpha reasoning for sample {i}",
                "answer": "oops not json" if failed else f"[{i}]",
                "parse_status": "failed" if failed else "ok",
                "error": "could not parse the answer <json>" if failed else None,
                "seconds": 0.1,
            }
            score = _score(gts[i], pred, failed)
            rec = {"id": sid, "expression": samples[sid].expression, "prediction": prediction, "score": score}
            lines.append(json.dumps(rec))
        (run / model / f"{SPLIT}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    suite = {"name": "toy", "version": "3", "fingerprint": "abc123", "description": "a toy suite"}
    manifest = {
        "run_id": "run-2024-toy",
        "created": "2024-01-02T03:04:05",
        "suite": suite,
        "splits": [SPLIT],
        "models": {m: {"adapter": "replay", "description": f"model {m}", "fingerprint": "f" * 8} for m in MODELS},
        "status": {m: {SPLIT: "done"} for m in MODELS},
        "versions": {"numpy": np.__version__},
        "git_commit": "deadbeef",
        "argv": ["harness", "run"],
    }
    conv = Conventions().to_dict()
    results = {
        "schema": "harness.results",
        "schema_version": 1,
        "unit": "percent",
        "run_id": "run-2024-toy",
        "suite": suite,
        "conventions": conv,
        "results": {
            "alpha": {
                SPLIT: {
                    "n": 6,
                    "n_records": 6,
                    "n_failed": 0,
                    "n_ciou": 6,
                    "n_giou": 6,
                    "ciou": 61.234,
                    "giou": 72.46,
                    "ciou_ci95": [58.04, 64.01],
                    "giou_ci95": [60.0, 80.0],
                    "prec@0.5": 66.67,
                    "prec@0.6": 66.67,
                    "prec@0.7": 50.0,
                    "prec@0.8": 50.0,
                    "prec@0.9": 50.0,
                    "parse_failure_rate": 0.0,
                    "n_no_target": 1,
                    "n_acc": 100.0,
                    "t_acc": 100.0,
                }
            },
            "beta<i>": {
                SPLIT: {
                    "n": 6,
                    "n_records": 6,
                    "n_failed": 1,
                    "n_ciou": 6,
                    "n_giou": 6,
                    "ciou": 47.81,
                    "giou": 44.44,
                    "ciou_ci95": [40.0, 55.0],
                    "giou_ci95": [30.0, 60.0],
                    "prec@0.5": 50.0,
                    "prec@0.6": 50.0,
                    "prec@0.7": 33.33,
                    "prec@0.8": 33.33,
                    "prec@0.9": 16.67,
                    "parse_failure_rate": 16.67,
                }
            },
        },
        "published": [{"model": "LISA-7B", "split": SPLIT, "metric": "ciou", "value": 74.1, "source": "LISA paper, Table 1"}],
    }
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return run, {SPLIT: samples}


def _render(run_dir: Path, samples: Any, **kw: Any) -> Path:
    """The renderer given the results its caller derived (here crafted by hand: the renderer is what is tested)."""
    return render_report(run_dir, samples, doc=json.loads((run_dir / "results.json").read_text()), **kw)


@pytest.fixture()
def run(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Sample]]]:
    return make_run(tmp_path)


def test_report_shows_numbers_plots_and_gallery(run: tuple[Path, dict[str, dict[str, Sample]]]) -> None:
    run_dir, samples = run
    out = _render(run_dir, samples, gallery_per_category=3)
    assert out == run_dir / "report" / "index.html"
    html = out.read_text(encoding="utf-8")
    for text in ("61.2", "72.5", "47.8", "44.4", "[58.0, 64.0]", "n=6", "16.7", "toy", "run-2024-toy", "deadbeef"):
        assert text in html, text
    assert "(published) LISA-7B" in html and "74.1" in html and "LISA paper, Table 1" in html
    for name, value in Conventions().to_dict().items():  # every convention is stated
        assert name in html and str(value) in html
    # three plots and the per-slice plot of the one pair (SVG), each also written beside the report; thumbnails
    assert html.count("data:image/svg+xml;base64,") == 3 + 1 and html.count("data:image/jpeg;base64,") >= 4
    figures = sorted(p.name for p in (run_dir / "report" / "figures").iterdir())
    assert len(figures) == 2 * (3 + 1) and {p.rsplit(".", 1)[1] for p in figures} == {"png", "svg"}
    assert "alpha reasoning for sample" in html
    assert "could not parse the answer &lt;json&gt;" in html  # failed prediction's error is shown, escaped
    assert "the thing number" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    for category in ("disagreed", "worst", "failures", "typical"):
        assert f'id="gallery-{category}"' in html


def test_model_text_is_escaped(run: tuple[Path, dict[str, dict[str, Sample]]]) -> None:
    run_dir, samples = run
    html = _render(run_dir, samples).read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "beta&lt;i&gt;" in html and "beta<i>" not in html
    assert len(re.findall(r"<script>", html)) == 1  # only the report's own table sorter


def test_renders_without_samples(run: tuple[Path, dict[str, dict[str, Sample]]]) -> None:
    run_dir, _ = run
    html = _render(run_dir, None).read_text(encoding="utf-8")
    assert html.count("data:image/svg+xml;base64,") == 3 + 1  # the plots and the pairwise plot, no thumbnails
    assert "data:image/jpeg;base64," not in html
    assert "gallery shows text only" in html
    assert "the thing number" in html and "61.2" in html


def test_truncated_last_line_is_tolerated(run: tuple[Path, dict[str, dict[str, Sample]]]) -> None:
    run_dir, samples = run
    log = run_dir / "alpha" / f"{SPLIT}.jsonl"
    with log.open("ab") as fh:
        fh.write('{"id": "toy/val/9999", "expression": "cut off \u00e9'.encode()[:-1])  # also cut inside a UTF-8 char
    assert len(read_records(log)) == 6
    assert "61.2" in _render(run_dir, samples).read_text(encoding="utf-8")


def test_corrupt_middle_line_raises(run: tuple[Path, dict[str, dict[str, Sample]]]) -> None:
    run_dir, samples = run
    log = run_dir / "alpha" / f"{SPLIT}.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{log}:3:")):
        read_records(log)
    with pytest.raises(ValueError, match=re.escape("val.jsonl:3")):
        _render(run_dir, samples)


def test_read_records_edge_cases(tmp_path: Path) -> None:
    assert read_records(tmp_path / "missing.jsonl") == []
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=":4: a record must be a JSON object"):
        read_records(path)
    path.write_text('{"id": 1}\n{"id": 2}', encoding="utf-8")  # no newline: possibly cut, redone on resume
    assert [r["id"] for r in read_records(path)] == [1]


def test_gallery_selection_is_deterministic(run: tuple[Path, dict[str, dict[str, Sample]]]) -> None:
    run_dir, _ = run
    records = {m: {SPLIT: read_records(run_dir / m / f"{SPLIT}.jsonl")} for m in MODELS}
    picks = select(index_records(records), 2)
    assert picks == select(index_records(records), 2)
    assert list(picks["failures"]) == [(SPLIT, "toy/val/0001")]
    assert len(picks["worst"]) == 2 and not set(picks["worst"]) & set(picks["typical"])
    # ties: samples 0000.. with equal means are ordered by id
    ok = {"mask": {"size": [1, 1], "counts": "01"}}  # a prediction with a mask: not a failure
    tied = {m: {SPLIT: [{"id": i, "score": {"iou": 0.5}, "prediction": ok} for i in ("b", "a", "c")]} for m in ("m1", "m2")}
    assert list(select(index_records(tied), 2)["worst"]) == [(SPLIT, "a"), (SPLIT, "b")]
    assert select(index_records(tied), 2)["disagreed"] == {}


def test_gallery_covers_every_split_and_shows_no_sample_twice() -> None:
    def rec(i: str, iou: float, box: list[float] | None = None) -> dict[str, Any]:
        mask = masks.encode(_rect(0, 0, 10, 10))  # tight box (0, 0, 10, 10)
        return {"id": i, "score": {"iou": iou}, "prediction": {"mask": mask, "box": box, "parse_status": "ok" if box else "none"}}

    records = {
        "m1": {"val": [rec(f"v{k}", k / 10) for k in range(6)], "test": [rec(f"t{k}", 0.9 + k / 100) for k in range(6)]},
        "m2": {"val": [rec(f"v{k}", k / 10 + (0.3 if k == 5 else 0)) for k in range(6)],
               "test": [rec("t0", 0.9, [20, 20, 30, 30]), rec("t1", 0.91, [0, 0, 10, 10]), rec("t2", 0.5, [0, 0, 10, 10]),
                        *(rec(f"t{k}", 0.9 + k / 100) for k in range(3, 6))]},
    }
    picks = select(index_records(records), 2)
    shown = [key for keys in picks.values() for key in keys]
    assert len(shown) == len(set(shown))  # no sample twice across categories
    assert "box_mask" not in picks  # a stated box against its mask has its own gallery (Reasoning section)
    assert {split for split, _ in picks["typical"]} == {"val", "test"}
    assert list(picks["worst"]) == [("val", "v0"), ("val", "v1")]  # m1's lowest, then m2's lowest not yet shown
    assert next(iter(picks["disagreed"])) == ("test", "t2")  # spread 0.42, then v5 (0.3)
    assert picks["disagreed"][("test", "t2")] == "IoU spread 42.0 points (m1 92.0%, m2 50.0%)"


def test_precision_curve_matches_metrics(run: tuple[Path, dict[str, dict[str, Sample]]]) -> None:
    run_dir, _ = run
    conv = Conventions()
    for model in MODELS:
        recs = read_records(run_dir / model / f"{SPLIT}.jsonl")
        summary = summarize([SampleScore.from_json(r["score"]) for r in recs], conv, bootstrap_rounds=0)
        curve = ScoreColumns.of(recs).precision_curve(conv.to_dict())
        for t, value in zip(CURVE_THRESHOLDS, curve):
            if f"prec@{t:.1f}" in summary and round(t, 1) == t:
                assert value == pytest.approx(summary[f"prec@{t:.1f}"])


def test_unsafe_model_name_is_not_followed(run: tuple[Path, dict[str, dict[str, Sample]]]) -> None:
    run_dir, samples = run
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    manifest["models"]["../../etc"] = {"adapter": "x"}
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    html = _render(run_dir, samples).read_text(encoding="utf-8")
    assert "leads outside the run directory" in html


def test_failures_and_events_are_listed(run: tuple[Path, dict[str, dict[str, Sample]]]) -> None:
    run_dir, samples = run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["events"] = [{"at": "2026-01-01T00:00:00+00:00", "event": "interrupted", "model": "alpha", "split": "val", "shard": "all"}]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    html = _render(run_dir, samples).read_text(encoding="utf-8")
    section = html[html.index('id="failures"'):]
    failed = [r["id"] for m in MODELS for r in read_records(run_dir / m / f"{SPLIT}.jsonl") if r["prediction"]["mask"] is None]
    assert failed and all(i in section for i in failed)
    assert f"{len(failed)} in all" in section and "interrupted" in section
