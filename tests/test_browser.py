"""The leaderboard and a run report in a real browser (headless Chromium): no console errors,
sorting by clicking a header, the metric switch, and a screenshot of each page.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: file
descriptors 3 and 4, NUL-separated JSON), so no extra package is needed. Skipped where
/usr/bin/chromium (Debian's ``chromium``) is absent. Screenshots go to the test's tmp dir and,
when HARNESS_SCREENSHOT_DIR is set, there too.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_leaderboard import LENS_T1, RC_SPLITS, _published, write_results

from harness.publish.leaderboard import build_site
from harness.run.config import build_config
from harness.run.runner import run

CHROMIUM = Path(os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,900", "--remote-debugging-pipe"]
TIMEOUT = 30.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (Debian package chromium)"),
]


class Browser:
    """A minimal DevTools-protocol client over Chromium's debugging pipe, with one page."""

    def __init__(self, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3 and writes replies on fd 4
            high_r, high_w = os.dup(to_chrome_r) + 100, os.dup(from_chrome_w) + 100
            os.dup2(to_chrome_r, high_r)
            os.dup2(from_chrome_w, high_w)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(3, 4), preexec_fn=child_fds)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no message from chromium")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)  # type: ignore[no-any-return]

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})  # type: ignore[no-any-return]
            self.events.append(reply)

    def open(self, url: str) -> None:
        self.events.clear()
        error = self.call("Page.navigate", {"url": url}, session=True).get("errorText")
        if error:
            raise RuntimeError(f"{url}: {error}")
        deadline = time.monotonic() + TIMEOUT
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._read_message(deadline))

    def js(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element (scrolled into view)."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
                      " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
                      session=True)

    def console_errors(self) -> list[str]:
        self.js("0")  # flush events queued so far
        errors = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                errors.append(json.dumps(p.get("exceptionDetails"))[:500])
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                errors.append(json.dumps(p.get("args"))[:500])
            elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                errors.append(json.dumps(p["entry"])[:500])
        return errors

    def screenshot(self, name: str, directory: Path, selector: str | None = None, width: int = 1280,
                   max_height: int = 2400) -> list[Path]:
        """A PNG of the page (or of one element, from its top), at most ``width`` x ``max_height`` CSS pixels, in
        ``directory`` and in $HARNESS_SCREENSHOT_DIR when set (for the closing note of a change)."""
        self.js("window.scrollTo(0, 0)")
        top, height = self.js(
            "(() => { const e = %s; const r = e.getBoundingClientRect(); return [r.top + window.scrollY, r.height]; })()"
            % (f"document.querySelector({json.dumps(selector)})" if selector else "document.documentElement"))
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        if selector is None:
            height = size["height"]
        clip = {"x": 0, "y": top, "width": min(size["width"], width), "height": min(height, max_height), "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                                          session=True)["data"])
        paths = [directory / f"{name}.png"]
        if os.environ.get("HARNESS_SCREENSHOT_DIR"):
            paths.append(Path(os.environ["HARNESS_SCREENSHOT_DIR"]) / f"{name}.png")
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return paths

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def leaderboard_site(root: Path, runs: list[Path], title: str) -> Path:
    """The leaderboard of ``runs`` and, beside them, a crafted RefCOCO results.json (LENS measured, with published
    rows) for the paper-table page; returns the site's folder."""
    published = _published("LENS-3B", RC_SPLITS, LENS_T1)
    published += _published("Seg-Zero-3B", RC_SPLITS, [None, 79.3, None, None, 73.7, None, 71.5, None])
    measured = {"lens": {s: (v - 0.8, v + 1.0) for s, v in zip(RC_SPLITS, LENS_T1)}}
    crafted = write_results(root / "refcoco-run", "refcoco", measured, published)
    aliases = root / "aliases.yaml"
    aliases.write_text("lens: LENS-3B\n")
    return build_site([*runs, crafted], root / "site", aliases_file=aliases, title=title).parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real shapes run (three models, a few images per split, with its report) and its leaderboard."""
    root = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        out = run(build_config(models="shapes-reasoner,oracle-box,empty", suite="shapes", limit=24, out=root / "shapes-run")).run_dir
    return leaderboard_site(root, [out], "Browser test")


@pytest.fixture()
def browser(tmp_path: Path) -> Any:
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def _column(browser: Browser, table: str, col: int, band: str = "") -> list[str]:
    """The sort keys of one column, top to bottom (of one band: models, reference, published)."""
    rows = f"#{table} tbody{'.' + band if band else ''} tr:not(.band-head)"
    return browser.js(f"Array.from(document.querySelectorAll('{rows}')).map(r => r.cells[{col}].dataset.sort)")  # type: ignore[no-any-return]


def test_leaderboard_sorts_switches_and_has_no_console_errors(site: Path, browser: Browser, tmp_path: Path) -> None:
    browser.open(site.joinpath("bench-shapes.html").as_uri())
    assert browser.js("document.title").startswith("shapes")
    assert browser.js("document.querySelector('.metric-switch').hidden") is False
    assert browser.js("document.querySelector('.metric-view[data-metric=giou]').hidden") is True

    browser.click("#table-ciou thead th[data-col='2']")  # the val column: best first, within each band
    values = [float(v) for v in _column(browser, "table-ciou", 2, "reference")]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    assert browser.js("document.querySelector('#table-ciou tbody.models tr th').dataset.name") == "shapes-reasoner"
    assert browser.js("document.querySelector('#table-ciou tbody.reference tr:last-child th').dataset.name") == "empty"
    browser.click("#table-ciou thead th[data-col='2']")  # again: ascending
    assert [float(v) for v in _column(browser, "table-ciou", 2, "reference")] == sorted(values)
    browser.click("#table-ciou thead th[data-col='0']")  # by name, the bands kept
    assert browser.js("Array.from(document.querySelectorAll('#table-ciou tbody tr:not(.band-head) th')).map(t => t.dataset.name)") \
        == ["shapes-reasoner", "empty", "oracle-box"]
    # a --limit run: every row says so (the cells say how much)
    assert browser.js("document.querySelectorAll('#table-ciou tbody tr:not(.band-head) th .row-badge').length") == 3

    browser.click(".metric-switch button[data-metric='giou']")
    assert browser.js("document.querySelector('.metric-view[data-metric=ciou]').hidden") is True
    assert browser.js("document.querySelector('.metric-view[data-metric=giou]').hidden") is False
    assert browser.js("document.querySelector('button[data-metric=giou]').getAttribute('aria-pressed')") == "true"
    browser.click(".metric-switch button[data-metric='ciou']")
    assert browser.console_errors() == []
    shots = browser.screenshot("leaderboard-bench", tmp_path)

    for page in ("index.html", "bench-refcoco.html", "tables.html"):
        browser.open(site.joinpath(page).as_uri())
        assert browser.console_errors() == [], page
        shots += browser.screenshot(f"leaderboard-{page.removesuffix('.html')}", tmp_path)
    browser.click("#paper-refcoco thead th[data-col='9']")  # the paper table's avg column
    top = browser.js("document.querySelector('#paper-refcoco tbody.published tr:not(.band-head) th').textContent.trim()")
    assert top.startswith("LENS-3B")  # the published band sorts apart from the measured rows
    assert all(p.stat().st_size > 10_000 for p in shots)


def test_run_report_via_the_leaderboard_link(site: Path, browser: Browser, tmp_path: Path) -> None:
    browser.open(site.joinpath("bench-shapes.html").as_uri())
    browser.click("#table-ciou tbody tr td.run a")  # the run's report, copied into the site
    deadline = time.monotonic() + TIMEOUT
    while not browser.js("location.href.endsWith('/runs/shapes-run/index.html') && document.readyState === 'complete'"):
        assert time.monotonic() < deadline, "the report link did not open"
        time.sleep(0.1)
    assert browser.js("document.querySelectorAll('#gallery .sample').length") > 0
    # the Reasoning section: a row for the text model only, and its box-mask disagreement gallery
    assert browser.js("Array.from(document.querySelectorAll('#reasoning table.reasoning tbody th')).map(t => t.textContent.trim())") \
        == ["shapes-reasoner", "shapes-reasoner"]
    # its disagreement gallery: samples whose stated box and mask disagree (IoU < 0.5), or a line saying there are none
    assert browser.js("document.querySelectorAll('#reasoning .sample img').length > 0 || "
                      "document.querySelector('#reasoning').textContent.includes('None: every box')")
    assert browser.js("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    browser.click("table.details thead tr:last-child th:nth-child(4)")  # cIoU column of the first details table (below its group row)
    col = browser.js("Array.from(document.querySelector('table.details').tBodies[0].rows).map(r => parseFloat(r.cells[3].textContent))")
    assert col == sorted(col)
    # the analysis sections: slice heat map, pairwise heat map and per-slice plot, reasoning table
    assert browser.js("document.querySelectorAll('#slices table.slices td.heat').length") > 0
    assert browser.js("document.querySelectorAll('#pairwise table.pair-heat tbody tr').length") > 0
    assert browser.js("Array.from(document.querySelectorAll('#pairwise img')).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.js("document.querySelectorAll('#pairwise img').length") > 0
    assert browser.js("document.querySelectorAll('#reasoning tbody tr').length") > 0
    assert browser.console_errors() == []
    shots = browser.screenshot("run-report", tmp_path)
    assert shots[0].stat().st_size > 10_000


@pytest.fixture(scope="module")
def saco_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A replay run of instance predictions on generated SA-Co data (two subsets, three annotators), with its report."""
    from helper_saco import predictions, write_saco

    root = tmp_path_factory.mktemp("saco")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        data = write_saco(root / "data")
        replay = root / "found.jsonl"
        replay.write_text("".join(json.dumps({"id": k, **v}) + "\n" for k, v in predictions(data).items()))
        result = run(build_config(models=f"replay:{replay},empty", suite=str(data.suite), data_root=data.root, out=root / "run"))
    assert result.report_path is not None
    return result.report_path


def test_saco_report_leads_with_cgf1_and_its_average(saco_report: Path, browser: Browser, tmp_path: Path) -> None:
    browser.open(saco_report.as_uri())
    titles = browser.js("Array.from(document.querySelectorAll('#leaderboard h3')).map(h => h.textContent.trim())")
    assert titles[:3] == ["cgF1", "pmF1 (positive micro F1)", "IL_MCC"] and "cIoU" in titles
    first = "document.querySelectorAll('#leaderboard table')[0]"
    assert browser.js(f"Array.from({first}.tHead.rows[0].cells).map(c => c.textContent.trim())") == ["Model", "crowded", "sa1b", "average"]
    rows = browser.js(f"Array.from({first}.tBodies[0].rows).map(r => r.cells[0].textContent.trim())")
    assert rows == ["replay-found", "empty reference", "(published) SAM 3"]  # empty is badged a reference line
    mcc = browser.js("document.querySelectorAll('#leaderboard table')[2].tBodies[0].rows[0].cells[1].querySelector('.v').textContent")
    assert -1 <= float(mcc) <= 1 and len(mcc.split(".")[1]) == 2  # a coefficient, two decimals
    assert "cgF1" in browser.js("Array.from(document.querySelectorAll('table.details')[0].tHead.rows[1].cells).map(c => c.textContent)")
    assert browser.js("document.querySelectorAll('#gallery .sample img').length") > 0
    assert browser.js("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.console_errors() == []
    assert browser.screenshot("saco-report", tmp_path)[0].stat().st_size > 10_000


def _fixture_report(root: Path, write: Any, suite: Path, models: str) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        write(root / "data")
        result = run(build_config(models=models, suite=str(suite), data_root=root / "data", out=root / "run"))
    assert result.report_path is not None
    return result.report_path


@pytest.mark.parametrize("name", ["mmr", "fp-refcoco"])
def test_the_new_suites_reports_render(name: str, browser: Browser, tmp_path: Path) -> None:
    """A run of the weight-free models on each new suite's test fixture: the report renders, its images load,
    and the no-target columns show where the suite has absent targets."""
    if name == "mmr":
        from test_sources_mmr import SUITE, write_mmr

        suite = tmp_path / "mmr.yaml"
        suite.write_text(json.dumps({**SUITE.raw, "splits": {"val": {}}, "default_splits": ["val"],
                                     "published": [p for p in SUITE.raw["published"] if p["split"] == "val"]}))
        report = _fixture_report(tmp_path, write_mmr, suite, "oracle-box,empty")
    else:
        from test_false_premise import mini_suite, write_fp_refer

        report = _fixture_report(tmp_path, write_fp_refer, mini_suite(tmp_path), "oracle-box,full")
    browser.open(report.as_uri())
    columns = browser.js("Array.from(document.querySelectorAll('table.details')[0].tHead.rows[1].cells).map(c => c.textContent)")
    assert ("exist acc" in columns) == (name == "fp-refcoco")
    assert browser.js("document.querySelectorAll('#gallery .sample img').length") > 0
    assert browser.js("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.console_errors() == []
