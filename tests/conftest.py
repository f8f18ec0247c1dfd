"""Shared fixtures: an isolated cache and working directory, test adapters, small suites."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import helper_adapters

from harness import registry
from harness.registry import AdapterEntry

TEST_ADAPTERS = {
    name: AdapterEntry(name, f"helper_adapters:{cls}", "test")
    for name, cls in (("counting", "CountingAdapter"), ("flaky", "FlakyAdapter"), ("greedy", "GreedyAdapter"), ("slow", "SlowAdapter"),
                      ("loads-file", "LoadsFileAdapter"), ("drawing", "DrawingAdapter"), ("multi-shapes", "MultiShapes"),
                      ("multi-greedy", "MultiGreedy"), ("preparing-shapes", "PreparingShapes"), ("pixel-boxes", "PixelBoxes"),
                      ("multi-pixel-boxes", "MultiPixelBoxes"), ("greedy-pixel-boxes", "GreedyPixelBoxes"),
                      ("interrupter", "Interrupter"), ("sleeper", "Sleeper"))
}


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache and working directory, and the test adapters registered."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "BUILTINS", {**registry.BUILTINS, **TEST_ADAPTERS})
    helper_adapters.CountingAdapter.calls.clear()
    helper_adapters.MultiShapes.calls.clear()
    for cls in (helper_adapters.PixelBoxes, helper_adapters.MultiPixelBoxes, helper_adapters.GreedyPixelBoxes,
                helper_adapters.Interrupter):
        cls.calls.clear()
        cls.threads.clear()
    return tmp_path


def write_suite(tmp_path: Path, val: int = 4, test: int = 3, **conventions: str) -> Path:
    """A small shapes suite (val/test image counts) with optional convention overrides."""
    path = tmp_path / "mini.yaml"
    conv = "".join(f"\n  {k}: {v}" for k, v in conventions.items()) or " {}"
    path.write_text(textwrap.dedent(f"""\
        name: mini
        version: 1
        source: {{format: shapes, seed: 3, images: {{val: {val}, test: {test}}}}}
        splits: {{val: {{}}, test: {{}}}}
        conventions:""") + conv + "\n")
    return path


def results_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())["results"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default `harness run` (the shapes suite, its four default models), with its report: what a new user sees."""
    from harness.run.config import build_config
    from harness.run.runner import run

    root = tmp_path_factory.mktemp("default-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        outcome = run(build_config(out=root / "run"))
    assert outcome.report_path is not None
    return outcome.run_dir

