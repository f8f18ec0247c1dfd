"""What a reader of the default ``harness run`` report sees in a real browser (headless Chromium, 1,400 px wide):
the headline within the first 900 px, no table header cut, every plot at least 600 px wide, no console error.

Uses test_browser's DevTools client. Full-page screenshots go to the test's tmp dir and, when
HARNESS_SCREENSHOT_DIR is set, there too (report-*.png).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_browser import Browser
from test_browser import pytestmark as browser_marks

from harness.run.finish import report_run

pytestmark = browser_marks
WIDTH = 1400
FIRST_SCREEN = 900


@pytest.fixture()
def browser(tmp_path: Path) -> Any:
    b = Browser(tmp_path / "profile")
    b.call("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": FIRST_SCREEN, "deviceScaleFactor": 1, "mobile": False},
           session=True)
    yield b
    b.close()


def full_page(browser: Browser, name: str, directory: Path) -> list[Path]:
    """A screenshot of the whole page at the viewport's width."""
    return browser.screenshot(name, directory, width=WIDTH, max_height=10**6)


# Every header cell whose text is cut (its content wider than its box) and every plot narrower than 600 px.
CLIPPED_HEADERS = """Array.from(document.querySelectorAll('thead th')).filter(th => th.offsetParent !== null
  && th.scrollWidth > th.clientWidth + 1).map(th => th.textContent.trim())"""
NARROW_PLOTS = """Array.from(document.querySelectorAll('figure.plot img')).filter(i => i.offsetParent !== null
  && i.getBoundingClientRect().width < 600).map(i => [i.alt, Math.round(i.getBoundingClientRect().width)])"""


def _reader_checks(browser: Browser) -> None:
    assert browser.js("window.innerWidth") == WIDTH
    top = browser.js("document.querySelector('#headline').getBoundingClientRect().top + window.scrollY")
    first_claim = browser.js("(() => { const e = document.querySelector('#headline .headline-split'); "
                             "return e.getBoundingClientRect().bottom + window.scrollY; })()")
    assert top < FIRST_SCREEN and first_claim < FIRST_SCREEN, (top, first_claim)
    assert browser.js(CLIPPED_HEADERS) == []
    # a wrapper may scroll (its table is wider than the page), the page itself never does
    assert browser.js("document.documentElement.scrollWidth <= window.innerWidth")
    assert browser.js("document.querySelectorAll('figure.plot img').length") > 0
    assert browser.js(NARROW_PLOTS) == []
    assert browser.js("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.console_errors() == []


def test_default_report_answers_on_the_first_screen(default_run: Path, browser: Browser, tmp_path: Path) -> None:
    browser.open((default_run / "report" / "index.html").as_uri())
    _reader_checks(browser)
    headline = browser.js("document.querySelector('#headline').innerText")
    # one model besides the reference lines: said plainly, and that model against each reference line
    assert "no best model to name" in headline and "shapes-reasoner" in headline
    assert browser.js("document.querySelectorAll('#headline table.headline-table tbody tr').length") == 2 * 3
    assert "significant" in headline
    # the heat maps: models x models per split and metric, two reference lines never compared
    assert browser.js("document.querySelectorAll('#pairwise table.pair-heat').length") == 2 * 2
    assert browser.js("document.querySelectorAll('#pairwise table.pair-heat td.blank').length") == 2 * 2 * (4 + 6)
    # one per-slice plot per split (the lone model and the best reference line), the other pairs collapsed
    assert browser.js("document.querySelectorAll('#pairwise figure.plot').length") == 2
    assert browser.js("document.querySelectorAll('#pairwise details.pair').length") == 2 * 2
    assert browser.js("Array.from(document.querySelectorAll('#pairwise details.pair')).every(d => !d.open)")
    # the details table: sticky first column, column groups above the columns
    assert browser.js("getComputedStyle(document.querySelector('table.details tbody th')).position") == "sticky"
    assert browser.js("document.querySelectorAll('table.details thead tr.groups th.group').length") > 2
    for shot in full_page(browser, "report-default", tmp_path):
        assert shot.stat().st_size > 50_000


def test_focus_report(default_run: Path, browser: Browser, tmp_path: Path) -> None:
    """`harness report --focus`: the headline compares that model with each other one; checks as above."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(default_run.parent / "cache"))
        report, _, _ = report_run(default_run, verify="none", focus="oracle-box")
    browser.open(report.as_uri())
    _reader_checks(browser)
    assert browser.js("document.querySelector('#headline h2').textContent").endswith("oracle-box against each other model")
    # the reference focus against the one model only: two reference lines are never compared
    rows = browser.js("Array.from(document.querySelectorAll('#headline table.headline-table tbody th')).map(t => t.textContent.trim())")
    assert rows == ["shapes-reasoner", "shapes-reasoner"]
    assert browser.js("document.querySelectorAll('#pairwise figure.plot').length") == 2
    full_page(browser, "report-focus", tmp_path)
