"""Not drawn is not failed: samples a protocol deliberately leaves out (GLaMM's seeded draw of up
to three sentences per image) have their own status, enter no metric, n or failure count, and
are stated as "not drawn: k" in results, the run summary and the report."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import results_of, write_suite

from harness import masks
from harness.cli import main
from harness.data.conventions import Conventions
from harness.records.store import read_records
from harness.score.metrics import summarize
from harness.score.scoring import score_sample
from harness.types import GroundTruth, Prediction, PredictionStatus, SampleScore

LISA = Conventions()


def test_a_sample_not_drawn_enters_nothing_but_its_count() -> None:
    gt = GroundTruth(mask=masks.encode(masks.decode(masks.full(2, 2))))  # 4 px
    hit = score_sample(Prediction(mask=masks.full(2, 2)), gt, LISA)  # I = U = 4
    failed = score_sample(Prediction(mask=None, error="boom"), gt, LISA)  # I = 0, U = 4, IoU 0
    skipped = Prediction(mask=None, status=PredictionStatus.NOT_DRAWN, error="not drawn: seed 0")
    assert skipped.not_drawn and not skipped.failed and failed.failed
    undrawn = score_sample(skipped, gt, LISA)
    assert undrawn.not_drawn and not undrawn.failed and undrawn.iou is None and not undrawn.counted_in_ciou
    res = summarize([hit, undrawn, failed, undrawn], LISA, bootstrap_rounds=0)
    # By hand: over the two drawn samples, cIoU = 4 / (4 + 4 + 1e-10), gIoU = (4 / (4 + 1e-5) + 0) / 2.
    assert res["n"] == 2 and res["n_failed"] == 1 and res["n_not_drawn"] == 2 and res["n_records"] == 4
    assert res["ciou"] == pytest.approx(50.0) and res["giou"] == pytest.approx(100 * 4 / (4 + 1e-5) / 2)
    assert res["prec@0.5"] == 50.0 and res["parse_failure_rate"] == 0.0
    assert "n_not_drawn" not in summarize([hit, failed], LISA, bootstrap_rounds=0)
    only = summarize([undrawn], LISA, bootstrap_rounds=0)
    assert only == {"n": 0, "n_records": 1, "n_failed": 0, "n_ciou": 0, "n_giou": 0, "n_not_drawn": 1}


def test_the_status_travels_in_logs_and_on_the_pipe_and_old_records_read_as_predicted() -> None:
    skipped = Prediction(mask=None, status=PredictionStatus.NOT_DRAWN, error="not drawn")
    assert skipped.to_json()["status"] == "not_drawn" and Prediction.from_json(skipped.to_json()) == skipped
    plain = Prediction(mask=masks.full(1, 1))
    assert "status" not in plain.to_json()  # the usual case adds nothing to a log line
    assert Prediction.from_json(plain.to_json()).status is PredictionStatus.PREDICTED
    old = {k: v for k, v in score_sample(plain, GroundTruth(mask=masks.full(1, 1)), LISA).to_json().items() if k != "not_drawn"}
    assert SampleScore.from_json(old).not_drawn is False


@pytest.mark.usefixtures("isolated")
def test_a_run_under_default_conventions_scores_the_drawn_samples_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=3, test=1)  # default conventions: failure zero
    out = tmp_path / "run"
    code = main(["run", "--models", "drawing,full", "--suite", str(suite), "--splits", "val", "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr  # nothing failed
    drawing, full = results_of(out)["drawing"]["val"], results_of(out)["full"]["val"]
    records = read_records(out / "drawing" / "val.jsonl")
    drawn_ids = {r["id"] for r in records if r["prediction"]["mask"] is not None}
    k = len(records) - len(drawn_ids)
    assert len(drawn_ids) == 3 and k > 0  # one per image
    assert all(r["prediction"]["status"] == "not_drawn" and r["score"]["not_drawn"] for r in records if r["id"] not in drawn_ids)
    assert drawing["n"] == 3 and drawing["n_failed"] == 0 and drawing["n_not_drawn"] == k and drawing["n_records"] == full["n"]
    assert drawing["complete"] is True
    # The same masks as "full" on those three samples: the numbers of the drawn subset exactly.
    subset = [SampleScore.from_json(r["score"]) for r in read_records(out / "full" / "val.jsonl") if r["id"] in drawn_ids]
    want = summarize(subset, LISA, bootstrap_rounds=0)
    assert drawing["ciou"] == pytest.approx(want["ciou"]) and drawing["giou"] == pytest.approx(want["giou"])
    assert f"drawing/val: not drawn: {k} of {len(records)} samples" in stdout and "full/val: not drawn" not in stdout
    assert "failed" not in stderr
    report = (out / "report" / "index.html").read_text()
    assert f"drawing: not drawn: {k} (" in report  # under the details table
    assert "<td>not drawn: one sentence per image</td>" not in report and "0 in all" in report  # not a failure row
    # A gallery panel of a sample the protocol left out says so, not "failed" (the gallery picks evidence, so such a
    # sample is shown only when picked: here it is picked by hand).
    from harness.publish.report import gallery

    left_out = next(r for r in records if r["id"] not in drawn_ids)
    key = (left_out["split"] if "split" in left_out else "val", left_out["id"])
    panel = gallery.build_entries({"typical": [key]}, {key: {"drawing": left_out}}, ["drawing"], None)[0]["entries"][0]["panels"][0]
    assert panel["not_drawn"] is True and panel["failed"] is False and "one sentence per image" in panel["error"]


def test_the_report_states_the_counts_under_the_details_table() -> None:
    from harness.publish.report.render import _details

    d = _details({"m": {"val": {"n": 5, "n_not_drawn": 3, "n_targeted_empty_gt": 2}}, "o": {"val": {"n": 8}}}, ["m", "o"], "val")
    assert [n.split(" (")[0] for n in d["notes"]] == ["m: not drawn: 3", "m: targeted, empty GT: 2"]
