"""The report's headline and pairwise views, on real shapes runs: the margin printed is exactly what
`harness compare` computes, reference lines are never "best" and never compared with each other,
--focus works from the command line, a run config and `harness report`, and the figures written beside
the report are the ones it shows (and the same bytes on a second render)."""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.publish.api import load_run
from harness.publish.compare import paired_differences
from harness.run.config import ConfigError, build_config
from harness.run.finish import report_run
from harness.run.runner import run
from harness.score.paired import p_text

LIMIT = 24
MODELS = "shapes-reasoner,{replay},oracle-box,empty"


def _text(page: str) -> str:
    """The page's text, tags dropped and entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", "", page)))


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shapes run with two real models (the reasoner, and a replay of the oracle's boxes with every third
    sample dropped, so the two differ) and two reference lines."""
    root = tmp_path_factory.mktemp("headline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        oracle = run(build_config(models="oracle-box", limit=LIMIT, out=root / "oracle"), render=False).run_dir
        lines = []
        for split in ("val", "test"):
            for k, line in enumerate((oracle / "oracle-box" / f"{split}.jsonl").read_text().splitlines()):
                rec = json.loads(line)
                if k % 3:  # an id absent from the file is a failed prediction
                    lines.append(json.dumps({"id": rec["id"], "mask": rec["prediction"]["mask"]}))
        replay = root / "boxes.jsonl"
        replay.write_text("\n".join(lines) + "\n")
        outcome = run(build_config(models=MODELS.format(replay=f"replay:{replay}"), limit=LIMIT, out=root / "run"))
    assert outcome.report_path is not None
    return outcome.run_dir


def _claims(page: str, split: str) -> list[str]:
    """The headline's sentences of one split."""
    block = page.split('id="headline"', 1)[1].split("</section>", 1)[0]
    part = block.split(f"<h3>{split}</h3>", 1)[1].split("</article>", 1)[0]
    return [_text(p).strip() for p in re.findall(r'<p class="claim[^"]*">(.*?)</p>', part, re.S)]


def test_headline_is_the_margin_harness_compare_prints(two_models: Path) -> None:
    page = (two_models / "report" / "index.html").read_text()
    doc = json.loads((two_models / "results.json").read_text())
    stored = load_run(two_models)
    for split in ("val", "test"):
        claims = _claims(page, split)
        assert [c.split()[0] for c in claims] == ["cIoU", "gIoU"]
        for claim, metric in zip(claims, ("ciou", "giou")):
            real = {m: doc["results"][m][split][metric] for m in ("shapes-reasoner", "replay-boxes")}
            best, runner = sorted(real, key=lambda m: -real[m])
            assert claim.startswith(f"{'cIoU' if metric == 'ciou' else 'gIoU'} {best} {real[best]:.1f} leads {runner}")
            # `harness compare RUN --models ...` prints B - A in the run's model order: the same resamples, the same
            # numbers, negated (the interval's ends swapped) where the headline's order is the other one
            row = next(d for d in paired_differences([stored], models=[runner, best], splits=[split], with_slices=False).rows
                       if d.metric == metric and d.family == "all")
            assert {row.a, row.b} == {runner, best} and row.ci_lo is not None and row.ci_hi is not None
            sign = 1 if (row.a, row.b) == (runner, best) else -1
            delta, lo, hi = sign * row.delta, *sorted((sign * row.ci_lo, sign * row.ci_hi))
            assert f"by {delta:+.1f} [{lo:+.1f}, {hi:+.1f}], p {p_text(row.p, 1000)}, n={row.n}:" in claim
            significant = lo > 0 or hi < 0
            assert claim.endswith(": significant" if significant else ": not significant")
    # the reference lines are named as such and never lead
    assert "Reference lines, never ranked: empty, oracle-box." in _text(page)
    assert not re.search(r"(empty|oracle-box) [\d.]+ leads", _text(page))


def test_pairwise_views_leave_reference_pairs_out(two_models: Path) -> None:
    page = (two_models / "report" / "index.html").read_text()
    heat = re.findall(r'<table class="pair-heat">(.*?)</table>', page, re.S)
    assert len(heat) == 2 * 2  # per split and metric
    for table in heat:
        rows = re.findall(r'<th scope="row"[^>]*>(.*?)</th>', table, re.S)
        assert [_text(r).strip() for r in rows] == ["shapes-reasoner", "replay-boxes", "oracle-box", "empty"]
        # the diagonal, and oracle-box vs empty both ways: blank; every other cell a signed difference
        assert table.count('class="num blank"') + table.count('class="num sig blank"') == 4 + 2
        cells = re.findall(r'<td class="num( sig)?"[^>]*title="([^"]*)">([^<]*)', table)
        assert len(cells) == 16 - 6
        for sig, title, text in cells:
            assert text.strip() in html_lib.unescape(title)
            lo, hi = (float(x) for x in re.search(r"\[([-+][\d.]+), ([-+][\d.]+)\]", html_lib.unescape(title)).groups())
            assert bool(sig) == (lo > 0 or hi < 0)
        # antisymmetric: row - column is minus column - row
        by = {re.match(r"(\S+) − (\S+)", html_lib.unescape(t)).groups(): float(x) for _, t, x in cells}
        assert all(by[(b, a)] == -v for (a, b), v in by.items())
    # per-slice plots: the best pair only, per split; the rest (never two reference lines) collapsed
    pairwise = page.split('<section id="pairwise">', 1)[1].split("</section>", 1)[0]
    assert pairwise.count('<figure class="plot">') == 2
    summaries = [_text(s).strip() for s in re.findall(r"<summary>(.*?)</summary>", pairwise)]
    assert len(summaries) == 2 * 4 and not any("oracle-box" in s and "empty" in s for s in summaries)


def test_figures_beside_the_report_are_the_ones_shown_and_deterministic(two_models: Path) -> None:
    figures = two_models / "report" / "figures"
    page = (two_models / "report" / "index.html").read_text()
    linked = set(re.findall(r'href="(figures/[^"]+)" download', page))
    on_disk = {f"figures/{p.name}" for p in figures.iterdir()}
    assert linked == on_disk and len(on_disk) == 2 * (2 * 3 + 2)  # SVG + PNG of 3 plots and 1 slice plot per split
    for p in figures.glob("*.svg"):
        assert p.read_bytes().startswith(b"<?xml") and b"<svg" in p.read_bytes()
    for p in figures.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = {p.name: p.read_bytes() for p in figures.iterdir()}
    stale = figures / "old-plot.svg"
    stale.write_text("<svg/>")
    report_run(two_models, verify="none")
    assert not stale.exists()  # the folder holds this render's figures only
    assert {p.name: p.read_bytes() for p in figures.iterdir()} == before
    assert (two_models / "report" / "index.html").read_text() == page


def test_focus_from_report_flag_and_run_config(two_models: Path, tmp_path: Path) -> None:
    report, _, _ = report_run(two_models, verify="none", focus="replay-boxes")
    page = report.read_text()
    assert json.loads((two_models / "manifest.json").read_text())["config"]["focus"] == "replay-boxes"
    assert "Headline: replay-boxes against each other model" in page
    head = page.split('id="headline"', 1)[1].split("</section>", 1)[0]
    rows = [_text(r).split()[0] for r in re.findall(r"<tr[^>]*><th scope=\"row\">(.*?)</th>", head, re.S)]
    assert rows == ["shapes-reasoner", "oracle-box", "empty"] * 2
    pairwise = page.split('<section id="pairwise">', 1)[1].split("</section>", 1)[0]
    assert pairwise.count('<figure class="plot">') == 2 * 3  # the focus against each other model, per split
    assert "<h2>Headline</h2>" in report_run(two_models, verify="none", focus="")[0].read_text()  # back to naming the best
    assert json.loads((two_models / "manifest.json").read_text())["config"]["focus"] is None
    with pytest.raises(HarnessError, match="'nobody' is not a model of"):
        report_run(two_models, verify="none", focus="nobody")

    cfg = tmp_path / "run.yaml"
    cfg.write_text("models: {shapes-reasoner: {}, empty: {}}\nfocus: shapes-reasoner\n")
    assert build_config(cfg).focus == "shapes-reasoner"
    assert build_config(cfg, focus="empty").focus == "empty"  # the flag wins
    with pytest.raises(ConfigError, match=r"run.yaml: focus 'lens' is not a model of this run"):
        cfg.write_text("models: {shapes-reasoner: {}}\nfocus: lens\n")
        build_config(cfg)
    with pytest.raises(ConfigError, match="--focus 'lens' is not a model"):
        build_config(models="empty", focus="lens")


def test_fewer_than_two_models_is_said_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    outcome = run(build_config(models="oracle-box,empty", limit=8, out=tmp_path / "run"))
    assert outcome.report_path is not None
    text = _text(outcome.report_path.read_text())
    assert text.count("Fewer than two models to rank on this split (models: none; reference lines, never ranked: "
                      "oracle-box, empty): no best model to name.") == 2
    assert " leads " not in text


def test_the_reports_leaderboard_bands_reference_lines_below_the_models_and_never_bolds_them(tmp_path: Path) -> None:
    """The default four models: shapes-reasoner first (the only model), then oracle-box, full, empty by cIoU;
    oracle-box scores above shapes-reasoner on no split here, yet only a model's number may be bold."""
    from harness.publish.report.render import _leaderboards

    results = {"empty": {"val": {"ciou": 0.0}}, "full": {"val": {"ciou": 3.4}}, "oracle-box": {"val": {"ciou": 95.0}},
               "shapes-reasoner": {"val": {"ciou": 87.6}}}
    tables, _ = _leaderboards(results, [], list(results), ["val"], {}, None, frozenset({"empty", "full", "oracle-box"}))
    rows = tables[0]["rows"]
    assert [r["label"] for r in rows] == ["shapes-reasoner", "oracle-box", "full", "empty"]
    assert [c["best"] for r in rows for c in r["cells"]] == [True, False, False, False]
