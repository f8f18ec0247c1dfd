"""Partial and failed runs are visible everywhere: results.json says why a number is not complete, the
report header and the leaderboard mark it, and a partial or failing number is never bold or ranked
above a complete one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import write_suite

from harness import masks
from harness.cli import main
from harness.data.samples import load_samples
from harness.data.suites import load_suite
from harness.publish.leaderboard import build_site
from harness.records.store import read_json
from harness.score.schema import check_results

pytestmark = pytest.mark.usefixtures("isolated")


def _config(tmp_path: Path, suite: Path, out: str, replay: Path) -> Path:
    path = tmp_path / f"{out}.yaml"
    path.write_text(f"suite: {suite}\nsplits: [val]\nout: runs/{out}\nmodels:\n  mine: {{adapter: replay, options: {{path: {replay}}}}}\n")
    return path


def _replay(tmp_path: Path, name: str, suite: Path, wrong: int = 0, skip: int = 0) -> Path:
    """Ground-truth masks for every val sample but the first ``wrong`` (the last ``skip`` left out: failed)."""
    samples = load_samples(load_suite(str(suite)), ["val"], None)["val"]
    # A wrong answer is an empty mask of the right size: scored, not failed.
    lines = [{"id": s.id, "mask": s.gt.mask if k >= wrong else masks.empty(*s.gt.mask["size"])}
             for k, s in enumerate(samples[: len(samples) - skip])]
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_results_and_report_say_partial_and_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, val=3, test=1)
    full = _replay(tmp_path, "full", suite)
    assert main(["run", "--config", str(_config(tmp_path, suite, "full", full))]) == 0
    res = read_json(tmp_path / "runs" / "full" / "results.json")["results"]["mine"]["val"]
    n = res["n_expected"]
    assert res["complete"] is True and res["incomplete"] == [] and res["n_split"] == n
    assert "not complete" not in (tmp_path / "runs" / "full" / "report" / "index.html").read_text()

    assert main(["run", "--config", str(_config(tmp_path, suite, "lim", full)), "--limit", "4"]) == 0
    doc = check_results(read_json(tmp_path / "runs" / "lim" / "results.json"), "lim")
    res = doc["results"]["mine"]["val"]
    assert res["complete"] is False and res["incomplete"] == ["limit"]
    assert (res["n_records"], res["n_expected"], res["n_split"]) == (4, 4, n)
    header = (tmp_path / "runs" / "lim" / "report" / "index.html").read_text().split("<main>")[0]
    assert "not complete" in header and f"<li>mine / val: partial: 4 of {n}</li>" in header

    failing = _replay(tmp_path, "failing", suite, skip=2)
    capsys.readouterr()
    assert main(["run", "--config", str(_config(tmp_path, suite, "failing", failing))]) == 4
    res = read_json(tmp_path / "runs" / "failing" / "results.json")["results"]["mine"]["val"]
    assert res["complete"] is False and res["incomplete"] == ["failed"] and res["n_failed"] == 2
    html = (tmp_path / "runs" / "failing" / "report" / "index.html").read_text()
    assert "<li>mine / val: 2 failed</li>" in html.split("<main>")[0]
    assert html.count('<span class="badge failed">2 failed</span>') == 2  # beside the cIoU and the gIoU


def _rows(html: str, table: str) -> list[tuple[str, bool, str]]:
    """(run link, bold, badges) of each measured row of one leaderboard table, in page order."""
    body = html.split(f'id="table-{table}"')[1].split("</table>")[0]
    out = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        run = re.search(r'href="runs/([^/]+)/', row)
        cell = re.search(r'<td class="num([^"]*)"[^>]*>(.*?)</td>', row, re.S)
        if run and cell:
            out.append((run.group(1), "best" in cell.group(1), " ".join(re.findall(r'class="badge [^"]+">([^<]+)<', cell.group(2)))))
    return out


def test_leaderboard_bolds_the_full_run_over_a_higher_partial_one(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=3, test=1)
    # The full run gets its first two samples wrong; the --limit run (its first samples, all right) would score 100.
    assert main(["run", "--config", str(_config(tmp_path, suite, "full", _replay(tmp_path, "some-wrong", suite, wrong=2)))]) == 0
    assert main(["run", "--config", str(_config(tmp_path, suite, "lim", _replay(tmp_path, "right", suite))), "--limit", "4"]) == 0
    lim = read_json(tmp_path / "runs" / "lim" / "results.json")["results"]["mine"]["val"]
    full = read_json(tmp_path / "runs" / "full" / "results.json")["results"]["mine"]["val"]
    assert lim["ciou"] == pytest.approx(100.0) and full["ciou"] < lim["ciou"] and full["complete"] is True

    assert main(["run", "--config", str(_config(tmp_path, suite, "failing", _replay(tmp_path, "fails", suite, skip=1)))]) == 4

    # The partial and failing runs are given first (they would be listed first, and score higher): neither is bold nor first.
    index = build_site([tmp_path / "runs" / r for r in ("lim", "failing", "full")], tmp_path / "site")
    page = next(p for p in index.parent.glob("bench-*.html"))
    html = page.read_text()
    for metric in ("ciou", "giou"):
        assert _rows(html, metric) == [("full", True, ""), ("lim", False, f"partial: 4 of {full['n_expected']}"),
                                       ("failing", False, "1 failed")]
    assert 'data-tier="1"' in html
    # The paper tables (where a later run wins a cell) keep the complete number over a later partial one.
    layout = tmp_path / "layout.yaml"
    layout.write_text("tables:\n- {id: t, title: T, groups: [{label: g, suite: mini, columns: [{label: val, split: val}]}]}\n")
    index = build_site([tmp_path / "runs" / "full", tmp_path / "runs" / "lim"], tmp_path / "site2", tables_file=layout)
    cells = re.findall(r'<td class="num([^"]*)" data-sort="([^"]*)"', (index.parent / "tables.html").read_text())
    assert cells == [(" best", f"{full['ciou']:.6f}")]
