"""harness table: paper layouts as Markdown, LaTeX (booktabs) and CSV from runs."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import write_suite

from harness.cli import main
from harness.publish.table import latex_escape

LAYOUT = """\
tables:
  - id: mini
    title: "Mini (cIoU / gIoU)"
    caption: "A 50% test; of_course & more."
    suite: mini
    average: true
    groups:
      - label: val
        columns:
          - {label: cIoU, split: val, metric: ciou}
          - {label: gIoU, split: val, metric: giou}
      - label: test
        columns:
          - {label: cIoU, split: test}
"""


@pytest.fixture
def run(isolated: Path) -> Path:
    suite = write_suite(isolated, val=4, test=2)
    published = '  - {model: Paper_Net, split: val, metric: ciou, value: 99.5, source: "a paper & co_2"}\n'
    suite.write_text(suite.read_text() + "published:\n" + published)
    assert main(["run", "--models", "shapes-reasoner,oracle-box,empty", "--suite", str(suite), "--out", "r", "--no-report"]) == 0
    (isolated / "layout.yaml").write_text(LAYOUT)
    return isolated


def table(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["table", "r", "--layout", "layout.yaml", *args]) == 0
    return capsys.readouterr().out


def results(run: Path) -> dict:
    return json.loads((run / "r" / "results.json").read_text())["results"]


def test_markdown_bolds_the_best_measured_value_and_marks_published_rows(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = table(capsys, "--format", "markdown", "--decimals", "2")
    res = results(run)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in out.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(rows) == {"model", "shapes-reasoner", "oracle-box", "empty", "Paper\\_Net †"}
    for col, (split, metric) in enumerate((("val", "ciou"), ("val", "giou"), ("test", "ciou")), start=1):
        best = max(set(res) - {"empty", "full", "oracle-box"}, key=lambda m: res[m][split][metric])  # reference lines: never bold
        for model in res:
            cell = rows[model].strip("| ").split(" | ")[col]
            value = f"{res[model][split][metric]:.2f}"
            assert cell == (f"**{value}**" if model == best else value)
    assert rows["Paper\\_Net †"].split(" | ")[1] == "99.50"  # above every measured value, and not bold
    assert "† published, not measured: [1] a paper & co\\_2" in out
    assert "**" not in rows["Paper\\_Net †"]


def test_intervals_are_optional(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ci = results(run)["empty"]["val"]["giou_ci95"]
    assert f"[{ci[0]:.1f}, {ci[1]:.1f}]" in table(capsys, "--intervals")
    assert "[" not in table(capsys).split("†")[0].split("|", 1)[1]


def test_latex_structure(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = table(capsys, "--format", "latex", "--intervals")
    lines = out.splitlines()
    assert lines[0] == r"\begin{table}[t]" and lines[-1] == r"\end{table}"
    spec = re.search(r"\\begin\{tabular\}\{([lc]+)\}", out).group(1)
    assert spec == "lcccc"  # model, 3 columns, avg
    assert [out.count(r) for r in (r"\toprule", r"\bottomrule")] == [1, 1]
    assert out.index(r"\toprule") < out.index(r"\cmidrule(lr){2-3} \cmidrule(lr){4-4}") < out.index(r"\midrule") < out.index(r"\bottomrule")
    assert out.count(r"\midrule") == 2  # after the header, between measured and published rows
    body = out[out.index(r"\toprule"):out.index(r"\bottomrule")]
    for line in body.splitlines():  # every row spans every column
        if line.endswith(r"\\"):
            cells = re.split(r"(?<!\\)&", line[:-2])
            spans = [int(m.group(1)) if (m := re.search(r"\\multicolumn\{(\d+)\}", c)) else 1 for c in cells]
            assert sum(spans) == len(spec), line
    assert r"Paper\_Net$^\dagger$ & 99.5 & -- & -- & -- \\" in out
    res = results(run)
    assert out.count(r"\textbf{") == 3  # one best measured value per column, the average never
    for k, (split, metric) in enumerate((("val", "ciou"), ("val", "giou"), ("test", "ciou"))):
        best = max(set(res) - {"empty", "full", "oracle-box"}, key=lambda m: res[m][split][metric])  # reference lines: never bold
        row = next(line for line in out.splitlines() if line.startswith(best + " & "))
        assert row.split(" & ")[1 + k].startswith(rf"\textbf{{{res[best][split][metric]:.1f}}}")
    assert r"a paper \& co\_2" in out and r"\vline" not in out and "|" not in spec


def test_latex_escape() -> None:
    assert latex_escape(r"a_b & 50% #1 {x} ~ ^ \ –") == r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} --"


def test_latex_compiles_with_booktabs(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = shutil.which("pdflatex")
    if engine is None:
        pytest.skip("no pdflatex on this machine (the structure test checks the LaTeX)")
    (run / "t.tex").write_text(table(capsys, "--format", "latex", "--intervals", "--standalone"))
    done = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=run, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (run / "t.pdf").stat().st_size > 0


def test_csv_carries_unrounded_numbers(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = list(csv.DictReader(io.StringIO(table(capsys, "--format", "csv", "--intervals"))))
    res = results(run)
    by = {r["model"]: r for r in rows}
    paper = by["Paper_Net"]
    assert (paper["published"], paper["val cIoU"], paper["sources"]) == ("yes", "99.5", "a paper & co_2")
    for model in res:
        assert by[model]["published"] == "no"
        assert float(by[model]["val gIoU"]) == res[model]["val"]["giou"]
        assert [float(by[model]["test cIoU lo"]), float(by[model]["test cIoU hi"])] == res[model]["test"]["ciou_ci95"]
        vals = [res[model]["val"]["ciou"], res[model]["val"]["giou"], res[model]["test"]["ciou"]]
        assert float(by[model]["avg"]) == pytest.approx(sum(vals) / 3)


def test_the_lens_layouts_are_known(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    # A known layout no run of this suite fills: published numbers alone are not a measured table.
    assert main(["table", "r", "--layout", "lens-table3"]) == 2
    assert "no run given measured any column of this layout (the runs are of suite mini)" in capsys.readouterr().err
    assert main(["table", "r", "--layout", "lens-table9"]) == 2
    assert "neither a known layout (lens-table1, lens-table3) nor a layout file" in capsys.readouterr().err
