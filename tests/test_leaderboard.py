"""The static leaderboard site, from crafted results.json files: pages, published rows, deltas,
aliases, the paper-table layouts, escaping, and relative links that resolve."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from helper_runs import scores_for, write_crafted_run

from harness.cli import main
from harness.publish.leaderboard import LeaderboardError, build_site, load_tables
from harness.records.versions import ScoringVersionError

EVIL = "<script>alert(1)</script>"
RC_SPLITS = ["refcoco_val", "refcoco_testA", "refcoco_testB", "refcoco+_val", "refcoco+_testA", "refcoco+_testB",
             "refcocog_val", "refcocog_test"]
LENS_T1 = [84.2, 85.3, 81.0, 79.4, 82.8, 74.3, 81.2, 81.0]  # UPSTREAM 4.1 (LENS Table 1)
SRC_T1 = "hustvl/LENS assets/res1.png (Table 1)"


def _published(model: str, splits: list[str], values: list[float | None], metric: str = "ciou",
               source: str = SRC_T1) -> list[dict[str, Any]]:
    return [{"model": model, "split": s, "metric": metric, "value": v, "source": source} for s, v in zip(splits, values) if v is not None]


def write_results(root: Path, suite: str, results: dict[str, dict[str, tuple[float, float]]], published: list[dict[str, Any]] = (),  # type: ignore[assignment]
                  fingerprint: str | None = None, models: dict[str, dict[str, Any]] | None = None, report: bool = False) -> Path:
    """A run directory whose stored scores give these numbers (model -> split -> (cIoU, gIoU)), 100 samples
    each, results.json derived from them as the verifying reader derives it; optionally a report."""
    logs = {m: {s: [(f"{s}/{k:03d}", score) for k, score in enumerate(scores_for(c, g))] for s, (c, g) in by.items()}
            for m, by in results.items()}
    suite_info = {"name": suite, "version": "1", "fingerprint": fingerprint or f"{suite}-fp", "description": f"the {suite} suite"}
    write_crafted_run(root, logs, suite=suite_info, models=models or {m: {"adapter": m} for m in results}, published=published,
                      extra_manifest={"created": "2026-01-01", "git_commit": "abc123"})
    if report:
        (root / "report").mkdir()
        (root / "report" / "index.html").write_text(
            "<!DOCTYPE html><html><body><h1>run report</h1><section id='gallery'></section></body></html>")
    return root


class Tables(HTMLParser):
    """Rows (lists of cell texts) of every table, by table id; intervals, counts, tags and footnote marks left out."""

    SKIP = ("ci", "n", "ref", "tag", "runs", "alias")

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._skip = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag in ("span", "sup") and self._cell is not None and self._skip == 0 and dict(attrs).get("class") in self.SKIP:
            self._skip = 1
        elif self._skip:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if self._skip and tag in ("span", "sup", "a"):
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._skip:
            self._cell.append(data)


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    published = _published("LENS-3B", RC_SPLITS, LENS_T1)
    published += _published("LENS-2B", RC_SPLITS, [80.7, 82.7, 77.1, 73.8, 78.0, 67.3, 75.7, 76.4])
    published += _published("GLaMM (FT)", RC_SPLITS, [79.5, 83.2, 76.9, 72.6, 78.7, 64.6, 74.2, 74.9], source="groundingLMM Table 4")
    published += _published("Seg-Zero-3B", RC_SPLITS, [None, 79.3, None, None, 73.7, None, 71.5, None], source="LENS Table 1")
    rc = {
        "lens": {s: (v - 1.0, v + 2.0) for s, v in zip(RC_SPLITS, LENS_T1)},
        "glamm-ft": {"refcoco_val": (80.0, 81.0)},
        "lens-2b": {"refcoco_val": (79.7, 80.0)},
        EVIL: {"refcoco_val": (10.0, 11.0)},
    }
    runs = [write_results(tmp_path / "rc-run", "refcoco", rc, published, report=True,
                          models={**{m: {"adapter": m} for m in rc}, "glamm-ft": {"adapter": "glamm", "published_as": "GLaMM (FT)"}})]
    rs_pub = [{"model": "LENS-3B", "split": s, "metric": m, "value": v, "source": "hustvl/LENS assets/res2.png (Table 3)"}
              for s, m, v in (("val", "giou", 62.1), ("val", "ciou", 64.9), ("test", "giou", 57.2), ("test", "ciou", 58.0))]
    runs.append(write_results(tmp_path / "rs-run", "reasonseg", {"lens": {"val": (60.0, 61.0), "test": (55.0, 56.0)}}, rs_pub))
    gs_pub = [{"model": "LENS-3B", "split": "all", "metric": m, "value": v, "source": "LENS Table 3"}
              for m, v in (("giou", 67.0), ("ciou", 78.3))]
    runs.append(write_results(tmp_path / "gs-run", "groundingsuite", {"lens": {"all": (77.0, 66.0)}}, gs_pub))
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("lens: LENS-3B\n")
    out = tmp_path / "site"
    assert main(["leaderboard", *map(str, runs), "--out", str(out), "--aliases", str(aliases)]) == 0
    return out


def test_site_files_and_relative_links(site: Path) -> None:
    pages = {p.name for p in site.glob("*.html")}
    assert pages == {"index.html", "tables.html", "bench-refcoco.html", "bench-reasonseg.html", "bench-groundingsuite.html"}
    assert (site / ".nojekyll").exists()
    assert "run report" in (site / "runs" / "rc-run" / "index.html").read_text()
    for run in ("rc-run", "rs-run", "gs-run"):
        assert (site / "runs" / run / "results.json").is_file()
    for page in site.glob("*.html"):
        html = page.read_text()
        links = re.findall(r'(?:href|src)="([^"]*)"', html)
        assert links, page
        for link in links:
            assert "://" not in link and not link.startswith("//"), f"{page.name}: external or absolute link {link}"
            target = link.split("#")[0]
            if target:
                assert (site / target).exists(), f"{page.name}: broken link {link}"


def test_benchmark_page_published_rows_deltas_and_aliases(site: Path) -> None:
    html = (site / "bench-refcoco.html").read_text()
    rows = Tables(html).tables["table-ciou"]
    header, body = rows[0], {r[0]: r for r in rows[1:]}
    assert header[:4] == ["Model", "Run", "refcoco_val", "refcoco_testA"]
    assert body["LENS-3B"][2] == "84.2" and body["Seg-Zero-3B"][2] == "–" and body["Seg-Zero-3B"][3] == "79.3"
    assert body["lens"][2] == "83.2 Δ -1.0"  # measured − published LENS-3B, via --aliases
    assert body["glamm-ft"][2] == "80.0 Δ +0.5"  # via published_as in results.json
    assert body["lens-2b"][2] == "79.7 Δ -1.0"  # same name, case-insensitive
    assert body["lens"][1] == "rc-run · gallery"
    assert 'class="published"' in html and "published</span>" in html
    assert SRC_T1 in html and "groundingLMM Table 4" in html  # sources as footnotes
    ci = json.loads((site.parent / "rc-run" / "results.json").read_text())["results"]["lens"]["refcoco_val"]["ciou_ci95"]
    assert f"[{ci[0]:.1f}, {ci[1]:.1f}]" in html and "n=100" in html  # interval and count
    assert 'href="runs/rc-run/index.html#gallery"' in html
    giou = {r[0]: r for r in Tables(html).tables["table-giou"][1:]}
    assert giou["lens"][2] == "86.2"  # no published gIoU for RefCOCO: no delta
    assert 'data-metric="giou"' in html and 'class="metric-switch"' in html


def test_model_text_is_escaped(site: Path) -> None:
    for page in site.glob("*.html"):
        html = page.read_text()
        assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (site / "bench-refcoco.html").read_text()


def test_paper_tables_reproduce_lens_layouts(site: Path) -> None:
    tables = Tables((site / "tables.html").read_text()).tables
    t1 = tables["paper-refcoco"]
    assert t1[0] == ["Method", "RefCOCO", "RefCOCO+", "RefCOCOg", "avg"]
    assert t1[1] == ["val", "testA", "testB", "val", "testA", "testB", "val", "test"]
    body = {r[0]: r[1:] for r in t1[2:]}
    assert [c.split()[0] for c in body["LENS-3B"]] == [*(f"{v:.1f}" for v in LENS_T1), "81.2"]  # LENS reports avg 81.2
    assert body["Seg-Zero-3B"][-1] == "–"  # avg only over complete rows
    assert body["lens"][0] == "83.2 Δ -1.0" and body["lens"][-1] == f"{sum(LENS_T1) / 8 - 1.0:.1f}"
    assert body["glamm-ft"][1] == "–"
    t3 = tables["paper-reasoning"]
    assert t3[0] == ["Method", "ReasonSeg val", "ReasonSeg test", "GroundingSuite-Eval"]
    assert t3[1] == ["gIoU", "cIoU"] * 3
    body3 = {r[0]: r[1:] for r in t3[2:]}
    assert body3["LENS-3B"] == ["62.1", "64.9", "57.2", "58.0", "67.0", "78.3"]
    # One measured row from two runs (reasonseg and groundingsuite), each cell with its delta.
    assert body3["lens"] == ["61.0 Δ -1.1", "60.0 Δ -4.9", "56.0 Δ -1.2", "55.0 Δ -3.0", "66.0 Δ -1.0", "77.0 Δ -1.3"]


def test_tables_mapping_is_data(tmp_path: Path) -> None:
    run = write_results(tmp_path / "r", "mine", {"a": {"v1": (50.0, 40.0), "v2": (60.0, 45.0)}},
                        _published("B", ["v1", "v2"], [55.0, 65.0]))
    layout = tmp_path / "tables.yaml"
    layout.write_text("tables:\n  - id: t\n    title: Mine\n    suite: mine\n    average: true\n    groups:\n"
                      "      - label: G\n        columns:\n          - {label: one, split: v1}\n"
                      "          - {label: two, split: v2, metric: giou}\n")
    out = tmp_path / "site"
    build_site([run], out, tables_file=layout)
    t = Tables((out / "tables.html").read_text()).tables["paper-t"]
    assert t[1] == ["one", "two"]
    body = {r[0]: r[1:] for r in t[2:]}
    assert body["a"] == ["50.0", "45.0", "47.5"] and body["B"] == ["55.0", "–", "–"]


def test_later_runs_win_and_fingerprints_split_benchmarks(tmp_path: Path) -> None:
    first = write_results(tmp_path / "first", "refcoco", {"lens": {"refcoco_val": (70.0, 70.0)}}, fingerprint="aaaaaaaaaaaa")
    second = write_results(tmp_path / "second", "refcoco", {"lens": {"refcoco_val": (75.0, 75.0)}}, fingerprint="bbbbbbbbbbbb")
    out = tmp_path / "site"
    build_site([first, second], out)
    assert {p.name for p in out.glob("bench-*.html")} == {"bench-refcoco-aaaaaaaa.html", "bench-refcoco-bbbbbbbb.html"}
    body = {r[0]: r[1:] for r in Tables((out / "tables.html").read_text()).tables["paper-refcoco"][2:]}
    assert body["lens"][0] == "75.0"


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    run = write_results(tmp_path / "r", "mine", {"a": {"v": (1.0, 1.0)}})
    bad = tmp_path / "aliases.yaml"
    bad.write_text("a: [1, 2]\n")
    with pytest.raises(LeaderboardError, match=r"aliases\.yaml"):
        build_site([run], tmp_path / "out", aliases_file=bad)
    layout = tmp_path / "t.yaml"
    layout.write_text("tables:\n  - id: t\n    title: T\n    groups:\n"
                      "      - label: G\n        columns: [{label: x, split: v, metric: miou}]\n")
    with pytest.raises(LeaderboardError, match=r"t\.yaml"):
        load_tables(layout)
    with pytest.raises(LeaderboardError, match=r"no results\.json"):
        build_site([tmp_path / "nowhere"], tmp_path / "out")
    assert main(["leaderboard", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    # Numbers scored by other scoring code (or before versions were recorded) are not ranked beside these.
    doc = json.loads((run / "results.json").read_text())
    for stale in ("1:000000000000", None):
        doc["scoring_version"] = stale
        (run / "results.json").write_text(json.dumps(doc))
        with pytest.raises(ScoringVersionError, match=rf"harness rescore {re.escape(str(run))}"):
            build_site([run], tmp_path / "out")


def test_default_table_columns_name_splits_of_the_builtin_suites() -> None:
    """The default layout must follow the suites' split names (skipped for suites not built in)."""
    from harness.data.suites import builtin_suites, load_suite

    columns = [(table.id, col) for table in load_tables() for col in table.columns]
    suites = {name: load_suite(name) for name in {c.suite for _, c in columns} & set(builtin_suites())}
    checked = 0
    for table_id, col in columns:
        if col.suite in suites:
            assert col.split in suites[col.suite].splits, f"{table_id}: {col.suite} has no split {col.split}"
            checked += 1
    if not checked:
        pytest.skip("none of the table's suites is built in")


def test_rows_are_banded_and_sorted_by_the_metric_and_reference_lines_never_bold(tmp_path: Path) -> None:
    from harness.publish import leaderboard as lb

    rc = {"weak": {"refcoco_val": (50.0, 51.0), "refcoco_testA": (52.0, 50.0)},
          "oracle": {"refcoco_val": (90.0, 90.0), "refcoco_testA": (91.0, 91.0)},
          "strong": {"refcoco_val": (70.0, 71.0), "refcoco_testA": (72.0, 70.0)},
          "empty": {"refcoco_val": (0.0, 0.0), "refcoco_testA": (0.0, 0.0)}}
    models = {**{m: {"adapter": m} for m in rc}, "oracle": {"adapter": "oracle-box", "reference": True},
              "empty": {"adapter": "empty", "reference": True}}  # as `harness run` records AdapterInfo.reference
    run = write_results(tmp_path / "run", "refcoco", rc, _published("LENS-3B", RC_SPLITS, LENS_T1), models=models)
    runs = lb.load_runs([run])
    pub, pub_models = lb._published(runs, lb.load_tables())
    view = lb.benchmark_page(runs, {}, pub, pub_models)["views"][0]
    assert [r["label"] for r in view["rows"]] == ["strong", "weak", "oracle", "empty", "LENS-3B"]
    assert [(b["key"], [r["label"] for r in b["rows"]]) for b in view["bands"]] == \
        [("models", ["strong", "weak"]), ("reference", ["oracle", "empty"]), ("published", ["LENS-3B"])]
    best = {r["label"]: [c["best"] for c in r["cells"][:2]] for r in view["rows"]}
    assert best["strong"] == [True, True] and best["oracle"] == [False, False]  # an oracle is a bound, not the best

    site = tmp_path / "site"
    build_site([run], site)
    page = Tables((site / "bench-refcoco.html").read_text()).tables["table-ciou"]
    assert [row[0] for row in page[1:]] == ["strong", "weak", lb.BANDS[1][1], "oracle", "empty", lb.BANDS[2][1], "LENS-3B"]
    tables = (site / "tables.html").read_text()
    assert 'id="paper-refcoco"' in tables and 'id="paper-reasoning"' not in tables  # Table 3: nothing measured
    assert "No measured row for this layout yet" in tables
    # Only the sources the shown table cites, numbered from 1.
    assert re.findall(r'<li id="source-(\d+)">([^<]*)</li>', tables) == [("1", SRC_T1)]


def test_row_badges_say_what_is_incomplete() -> None:
    from harness.publish.leaderboard import _row_badges

    assert _row_badges([{"partial": "", "failed": ""}]) == []
    assert _row_badges([{"partial": "partial: 40 of 160", "failed": ""}, {"partial": "", "failed": "3 failed"}]) == ["partial", "failures"]
    assert _row_badges([{"partial": "data: 4 of 200 images", "failed": ""}]) == ["incomplete data"]
    assert _row_badges([{"partial": "partial: 4 of 16, data: 4 of 200 images", "failed": ""}]) == ["partial", "incomplete data"]
