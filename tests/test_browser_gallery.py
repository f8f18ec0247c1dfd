"""What a reader sees in the gallery and on the leaderboard, in headless Chromium at 1,400 px: the chain of
thought beside each mask without a click (a long one folded, opened by a click), the overlays in each model's
colour, an anchor per sample that a link lands on, the leaderboard sorted by its metric and banded (models,
reference lines, published rows), no console errors. Full-page screenshots go to the test's tmp dir and, when
HARNESS_SCREENSHOT_DIR is set, there too (gallery-*.png, leaderboard-*.png).

The Chromium driver is tests/test_browser.py's; skipped where Chromium is absent, as there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_browser import CHROMIUM, Browser, leaderboard_site
from test_leaderboard import RC_SPLITS

from harness.publish.colours import model_colours
from harness.run.config import DEFAULT_MODELS

WIDTH = 1400
MAX_SHOT = 16_000  # Chromium's largest capture, in CSS pixels

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (Debian package chromium)"),
]


@pytest.fixture(scope="module")
def site(default_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard of the default run and a crafted RefCOCO run (LENS measured, with published rows)."""
    return leaderboard_site(tmp_path_factory.mktemp("board"), [default_run], "Gallery test")


@pytest.fixture()
def browser(tmp_path: Path) -> Any:
    b = Browser(tmp_path / "profile")
    b.call("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False},
           session=True)
    yield b
    b.close()


def shoot(browser: Browser, name: str, directory: Path, selector: str | None = None) -> list[Path]:
    """A full-page screenshot at the viewport's width (or of one element, from its top), capped at MAX_SHOT px high."""
    return browser.screenshot(name, directory, selector, width=10**6, max_height=MAX_SHOT)


# How many pixels of an image are near an RGB colour (JPEG shifts colours a little): drawn on a canvas.
_NEAR = """(async (img, rgb) => {
  await img.decode(); const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0); const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.abs(d[i] - rgb[0]) + Math.abs(d[i + 1] - rgb[1]) + Math.abs(d[i + 2] - rgb[2]) < 60) n++; }
  return n; })"""


def _rgb(colour: str) -> list[int]:
    return [int(colour[i:i + 2], 16) for i in (1, 3, 5)]


def test_gallery_shows_reasoning_beside_masks_in_each_models_colour(default_run: Path, browser: Browser, tmp_path: Path) -> None:
    report = default_run / "report" / "index.html"
    browser.open(report.as_uri())
    assert browser.js("window.innerWidth") == WIDTH
    samples = browser.js("document.querySelectorAll('#gallery article.sample').length")
    assert samples > 0
    # The chain of thought is laid out and readable without a click, beside the reasoning model's mask.
    shown = browser.js("""Array.from(document.querySelectorAll('#gallery .model-panel')).filter(p => p.querySelector('.reasoning-text'))
      .map(p => { const t = p.querySelector('.reasoning-text'), i = p.querySelector('img').getBoundingClientRect(),
                        r = t.getBoundingClientRect();
                  return [p.querySelector('.model strong').textContent, t.innerText.length, r.height,
                          r.left >= i.right, r.top < i.bottom]; })""")
    assert shown and {m for m, *_ in shown} == {"shapes-reasoner"}
    assert all(n > 20 and h > 20 and beside and level for _, n, h, beside, level in shown), shown
    # A long one is folded after a few lines (clamped, not hidden), and a click on it shows it all.
    folded = "document.querySelector('#gallery details.fold')"
    assert browser.js(f"{folded} !== null"), "no chain of thought long enough to fold in the default run"
    clamped = browser.js(f"(() => {{ const t = {folded}.querySelector('.reasoning-text'); return [t.clientHeight, t.scrollHeight]; }})()")
    assert 20 < clamped[0] < clamped[1]
    browser.click("#gallery details.fold summary")
    opened = browser.js(f"(() => {{ const t = {folded}.querySelector('.reasoning-text'); return [t.clientHeight, t.scrollHeight]; }})()")
    assert opened[0] >= opened[1] > clamped[0]
    browser.click("#gallery details.fold summary")  # and a second click folds it again
    assert browser.js(f"{folded}.querySelector('.reasoning-text').clientHeight") == clamped[0]
    # The stated box in pixels, naming the space the model answered in (shapes-reasoner answers norm1000).
    boxes = browser.js("Array.from(document.querySelectorAll('#gallery .model-panel .box')).map(b => b.textContent)")
    assert any("px (model answered [" in b and "in norm1000)" in b for b in boxes), boxes
    # Overlays: every panel's image loaded, and each real model's panel carries its colour (fill and contour).
    assert browser.js("Array.from(document.querySelectorAll('#gallery img')).every(i => i.complete && i.naturalWidth > 0)")
    colours = model_colours(list(DEFAULT_MODELS), reference={"empty", "full", "oracle-box"})
    for model in ("shapes-reasoner", "oracle-box"):
        panels = ("Array.from(document.querySelectorAll('#gallery .model-panel'))"
                  f".filter(p => p.querySelector('.model strong').textContent === {json.dumps(model)})")
        assert set(browser.js(f"{panels}.map(p => getComputedStyle(p).getPropertyValue('--model').trim().toLowerCase())")) \
            == {colours[model].lower()}
        counts = browser.js(f"Promise.all({panels}.map(p => ({_NEAR})(p.querySelector('img'), {_rgb(colours[model])})))")
        assert max(counts) > 30, (model, counts)
    # The ground truth as a dashed outline, white dashes on black: black pixels on the (white) shapes images.
    gt = "Array.from(document.querySelectorAll('#gallery article:not(.no-target) .gt-panel img'))"
    assert min(browser.js(f"Promise.all({gt}.map(i => ({_NEAR})(i, [0, 0, 0])))")) > 20
    # No no-target sample that every model but the reference lines got right.
    assert browser.js("document.querySelectorAll('#gallery article.no-target').length") <= samples
    assert browser.console_errors() == []
    shoot(browser, "gallery-default-report-page", tmp_path)
    assert shoot(browser, "gallery-default-report", tmp_path, "#gallery")[0].stat().st_size > 50_000


def test_every_sample_has_an_anchor_a_link_lands_on(default_run: Path, browser: Browser) -> None:
    report = default_run / "report" / "index.html"
    browser.open(report.as_uri())
    ids = browser.js("Array.from(document.querySelectorAll('article.sample')).map(a => a.id)")
    assert ids and all(ids) and len(ids) == len(set(ids))
    links = browser.js("Array.from(document.querySelectorAll('article.sample')).map(a => a.querySelector('a.anchor').getAttribute('href'))")
    assert links == [f"#{i}" for i in ids]
    target = ids[len(ids) // 2]
    browser.open("about:blank")  # from another page: a fragment on the same page loads nothing
    browser.open(f"{report.as_uri()}#{target}")  # a paper or an issue pointing at one sample
    assert browser.js("document.querySelector(':target').id") == target
    top = browser.js(f"document.getElementById({json.dumps(target)}).getBoundingClientRect().top")
    assert 0 <= top < 100, top
    browser.click(f"#{ids[0]} a.anchor")  # the visible link: the address now names the sample
    assert browser.js("location.hash") == f"#{ids[0]}"
    assert browser.console_errors() == []


def _band(browser: Browser, table: str, band: str) -> list[tuple[str, float | None]]:
    """(model, the row's sort key) of one band of a leaderboard table, top to bottom."""
    rows = browser.js(f"Array.from(document.querySelectorAll('#{table} tbody.{band} tr:not(.band-head)')).map(r => "
                      "[r.querySelector('th').dataset.name, r.dataset.sort])")
    return [(name, float(v) if v else None) for name, v in rows]


def test_leaderboard_is_sorted_by_its_metric_and_banded(site: Path, browser: Browser, tmp_path: Path) -> None:
    browser.open(site.joinpath("bench-shapes.html").as_uri())
    for metric in ("ciou", "giou"):
        models, refs = _band(browser, f"table-{metric}", "models"), _band(browser, f"table-{metric}", "reference")
        assert [m for m, _ in models] == ["shapes-reasoner"]
        assert {m for m, _ in refs} == {"empty", "full", "oracle-box"}
        values = [v for _, v in refs if v is not None]
        assert values == sorted(values, reverse=True) and len(values) == 3, refs
        head = browser.js(f"document.querySelector('#table-{metric} tbody.reference th.band').textContent")
        assert "reference" in head.lower()
    assert browser.console_errors() == []
    shoot(browser, "leaderboard-shapes", tmp_path)

    browser.open(site.joinpath("bench-refcoco.html").as_uri())
    deltas = browser.js("Array.from(document.querySelectorAll('#table-ciou tbody.models td .delta')).map(d => d.textContent)")
    assert len(deltas) == len(RC_SPLITS) and all(d.startswith("Δ ") for d in deltas)
    assert _band(browser, "table-ciou", "published")  # LENS-3B and Seg-Zero-3B, apart from the measured rows
    assert browser.console_errors() == []
    shoot(browser, "leaderboard-refcoco", tmp_path)

    browser.open(site.joinpath("tables.html").as_uri())
    assert browser.js("document.querySelectorAll('table.paper').length") == 1  # Table 1 has a measured row; Table 3 none
    note = browser.js("document.querySelector('#reasoning p.no-measured').textContent")
    assert note.startswith("No measured row") and "reasonseg, groundingsuite" in note
    assert browser.console_errors() == []
    shoot(browser, "leaderboard-tables", tmp_path)
