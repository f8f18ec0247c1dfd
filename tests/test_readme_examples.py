"""The README's "Evaluate your own model" examples, run end to end as a user would run them.

- The adapter: its Python block is saved as the module its ``pyproject.toml`` block names, the entry
  point that block declares is registered (as installing the distribution would), and the README's
  ``harness list`` and ``harness run`` commands run: the model is listed, and it scores what its
  colour rule gives (well above an empty mask, below a perfect one).
- The replay file: the README's Python block writes a line, and the README's replay command scores it:
  that sample's mask is scored, and every sample missing from the file is a failed prediction.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from test_readme_blocks import blocks, commands, harness_argv

from harness import registry
from harness.cli import main

pytestmark = [pytest.mark.usefixtures("isolated"), pytest.mark.slow]
README = Path(__file__).resolve().parents[1] / "README.md"


def _block(lang: str, needle: str) -> str:
    found = [text for kind, _, text in blocks(README) if kind == lang and needle in text]
    assert len(found) == 1, f"README.md: expected one {lang} block with {needle!r}, found {len(found)}"
    return found[0]


def _harness_commands(needle: str) -> list[list[str]]:
    """The harness commands of the README's shell block that contains ``needle``, as argv lists."""
    return [argv for cmd in commands(_block("bash", needle)) if (argv := harness_argv(cmd)) is not None]


def _results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["results"]


def _entry_points(toml: str) -> dict[str, str]:
    """name -> "module:attr" of the block's ``harness.adapters`` entry points (the lines after that header)."""
    section = toml.split('[project.entry-points."harness.adapters"]', 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^\s*"?([\w.+-]+)"?\s*=\s*"([\w.]+:\w+)"\s*$', section, flags=re.M))


def test_the_readme_adapter_is_listed_and_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    points = _entry_points(_block("toml", "harness.adapters"))
    assert len(points) == 1, points
    [(name, target)] = points.items()
    module, _, cls = target.partition(":")
    code = _block("python", f"class {cls}(Adapter)")
    package = tmp_path / "src" / Path(*module.split("."))
    package.parent.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    package.with_suffix(".py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.delitem(sys.modules, module, raising=False)
    # What `pip install -e .` of the distribution does: its entry point is found by the registry.
    monkeypatch.setattr(registry, "plugins", lambda: {name: registry.AdapterEntry(name, target, "my-package")})

    listed, run = _harness_commands("harness list")
    assert main(listed) == 0
    assert re.search(rf"^\s+{re.escape(name)}\s.*\[my-package\]$", capsys.readouterr().out, flags=re.M)
    assert run[0] == "run" and name in run[run.index("--models") + 1].split(",")
    assert main(run) == 0, capsys.readouterr().err
    out = Path(run[run.index("--out") + 1])
    results = _results(out)
    for split, res in results[name].items():
        assert res["complete"] and res["n_failed"] == 0, (split, res)
        assert 25 < res["ciou"] < 60 and 0 < res["box_acc@0.5"] < 100, (split, res)  # a real rule, neither empty nor perfect
    assert (out / "report" / "index.html").is_file()


def test_the_readme_replay_line_is_scored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(_block("python", "masks.encode(mask)"), "README.md", "exec"), {})
    lines = (tmp_path / "preds.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line.keys() >= {"id", "mask"} and line["mask"]["size"] == [240, 320]

    [run] = _harness_commands("replay:preds.jsonl")
    assert main(run) == 4  # every sample missing from the file is a failed prediction
    capsys.readouterr()
    out = Path(run[run.index("--out") + 1])
    [(model, by_split)] = _results(out).items()
    assert model == "replay-preds"
    res = by_split["val"]
    assert res["n_records"] == res["n_expected"] and res["n_failed"] == res["n_expected"] - 1
    log = [json.loads(r) for r in (out / model / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    [mine] = [r for r in log if r["id"] == line["id"]]
    assert mine["expression"] == "the red shape"  # the example's box is where that shape is
    assert mine["score"]["iou"] > 0.7 and mine["score"]["box_iou"] > 0.9
