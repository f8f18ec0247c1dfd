"""On the built-in shapes suite: harness compare, harness.load_run().compare, harness table and the report agree."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

import harness
from harness.cli import main
from harness.score.paired import p_text

LAYOUT = """\
tables:
  - id: shapes
    title: "shapes"
    suite: shapes
    groups:
      - label: val
        columns:
          - {label: cIoU, split: val, metric: ciou}
          - {label: gIoU, split: val, metric: giou}
"""


def test_compare_api_and_table_give_the_same_paired_difference(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--models", "shapes-reasoner,oracle-box", "--splits", "val", "--out", "runs/shapes", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["compare", "runs/shapes", "--no-slices"]) == 0
    cli = capsys.readouterr().out
    api = harness.load_run("runs/shapes").compare(with_slices=False)
    (isolated / "layout.yaml").write_text(LAYOUT)
    assert main(["table", "runs/shapes", "--layout", "layout.yaml", "--format", "csv"]) == 0
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert main(["table", "runs/shapes", "--layout", "layout.yaml", "--format", "latex", "--decimals", "2"]) == 0
    tex = capsys.readouterr().out
    assert main(["report", "runs/shapes"]) == 0
    html = (isolated / "runs" / "shapes" / "report" / "index.html").read_text()
    pairwise = html[html.index('<section id="pairwise">'):html.index('<section id="reasoning">')]
    for metric, label in (("ciou", "cIoU"), ("giou", "gIoU")):
        d = api[(api.metric == metric) & (api.split == "val")].iloc[0]
        assert (d.a, d.b) == ("shapes-reasoner", "oracle-box")
        from_table = float(rows["oracle-box"][f"val {label}"]) - float(rows["shapes-reasoner"][f"val {label}"])
        assert d.delta == pytest.approx(from_table, abs=1e-9)
        line = re.search(rf"^shapes-reasoner\s+oracle-box\s+val\s+\(all\)\s+{label}\s+(\S+)\s+(\S+)\s+(\S+)\s+\[(\S+), (\S+)\]", cli, re.M)
        assert line is not None
        assert [float(x) for x in line.groups()] == pytest.approx([d.a_value, d.b_value, d.delta, d.ci_lo, d.ci_hi], abs=0.005)
        # the report's heat map of paired differences (row - column): the same difference, interval and p-value
        heat = pairwise.split('<span class="sub">— ' + label + "</span>", 1)[1].split("</table>", 1)[0]
        assert (f'title="oracle-box − shapes-reasoner = {d.delta:+.1f} [{d.ci_lo:+.1f}, {d.ci_hi:+.1f}], '
                f'p {p_text(d.p, 1000)}, n={d.n}"') in heat
        # and its headline: the one model against the reference line, the other way round
        headline = html[html.index('<section id="headline"'):html.index("</section>")]
        assert f'<strong class="delta">{-d.delta:+.1f}</strong>' in headline
        assert f'<span class="ci">[{-d.ci_hi:+.1f}, {-d.ci_lo:+.1f}]</span> <span class="p">p {p_text(d.p, 1000)}</span>' in headline
        # the LaTeX table shows the same two values
        for model, value in (("shapes-reasoner", d.a_value), ("oracle-box", d.b_value)):
            assert f"{value:.2f}" in next(t for t in tex.splitlines() if t.startswith(model + " & "))
