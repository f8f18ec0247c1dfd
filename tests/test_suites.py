"""The shipped suites live in suites/ (slices and the committed gate baseline beside them), apart from the
performance scripts in benchmarks/, and travel in the wheel; an old benchmarks/ path is told where they went."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.suites import SuiteError, builtin_suites, load_suite
from harness.resources import resource_dir
from harness.score.slices import slice_files

ROOT = Path(__file__).resolve().parents[1]


def test_builtin_suites_are_the_yaml_files_of_suites() -> None:
    found = builtin_suites()
    assert set(found) == {p.stem for p in (ROOT / "suites").glob("*.yaml")} >= {"shapes", "refcoco", "reasonseg"}
    assert all(p.parent == resource_dir("suites") for p in found.values())
    assert load_suite("refcoco").path == found["refcoco"]


def test_benchmarks_holds_only_the_performance_scripts() -> None:
    names = sorted(p.name for p in (ROOT / "benchmarks").iterdir() if p.name != "__pycache__")
    assert names and all(n.startswith("bench_") and n.endswith(".py") for n in names), names


def test_slices_are_read_from_suites() -> None:
    files = slice_files(load_suite("shapes"))
    assert files == [resource_dir("suites") / "slices" / "default.yaml", resource_dir("suites") / "slices" / "shapes.yaml"]


def test_an_old_benchmarks_path_names_the_new_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no benchmarks/ folder here, as in a fresh clone
    with pytest.raises(SuiteError, match=r"benchmarks/refcoco\.yaml does not exist; the built-in suite 'refcoco' is "
                                         r".*suites/refcoco\.yaml .*pass --suite refcoco"):
        load_suite("benchmarks/refcoco.yaml")
    assert main(["data", "layout", "benchmarks/shapes.yaml"]) == 2
    assert "pass --suite shapes" in capsys.readouterr().err
    # A missing file of any other name gets the plain message.
    with pytest.raises(SuiteError, match=r"mine\.yaml does not exist$"):
        load_suite("mine.yaml")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11")
def test_the_wheel_ships_suites_and_not_benchmarks() -> None:
    """pyproject's force-include puts suites/ where harness/resources.py looks in a wheel; benchmarks/ stays out."""
    import tomllib

    build = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["hatch"]["build"]["targets"]
    shipped = build["wheel"]["force-include"]
    assert shipped["suites"] == "harness/_suites" and shipped["reports"] == "harness/_reports"
    assert not any(src.startswith("benchmarks") for src in shipped)
    assert build["wheel"]["packages"] == ["harness"]
    assert "suites" in build["sdist"]["include"] and "benchmarks" not in build["sdist"]["include"]
