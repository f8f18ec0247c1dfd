"""Conformance with LENS's own run script (HARNESS_LENS_REPO): ``eval.sh`` read from the checkout.

Which checkpoint each published row was produced with is what ``eval.sh`` runs: each variant's
template is the one its script selects (``--cot`` or not), and the GroundingSuite-Eval row of the
README names the checkpoint ``eval.sh`` passes to ``evaluate_res2_gs.py``: the same
``--model_path`` as its non-CoT ReasonSeg run, i.e. the ``reasonseg-ft`` variant's checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness_lens import manifest

README = Path(__file__).resolve().parents[1] / "README.md"


def _runs(repo: Path) -> list[dict[str, object]]:
    """Each ``torchrun ... eval/<script>.py`` command of eval.sh: script, --model_path, --cot."""
    text = (repo / "eval.sh").read_text(encoding="utf-8").replace("\\\n", " ")
    runs = []
    for line in text.splitlines():
        m = re.search(r"torchrun\b.*?(eval/\w+\.py)(.*)", line)
        if m:
            path = re.search(r"--model_path\s+'?([^'\s]+)'?", m.group(2))
            runs.append({"script": m.group(1), "model_path": path.group(1) if path else None,
                         "cot": "--cot" in m.group(2).split()})
    return runs


def _templates(repo: Path, script: str) -> tuple[str, str]:
    """(CoT, non-CoT) question templates the script selects with ``if if_cot: ... else: ...``."""
    names = re.findall(r'question_template_registry\["(\w+)"\]', (repo / script).read_text(encoding="utf-8"))
    assert len(names) == 2, names
    return names[0], names[1]


def test_variants_use_the_template_their_script_selects(upstream_repo: Path) -> None:
    runs = _runs(upstream_repo)
    assert {r["script"] for r in runs} == {"eval/evaluate_res2.py", "eval/evaluate_reasonseg.py", "eval/evaluate_res2_gs.py"}
    refcoco = [r for r in runs if r["script"] == "eval/evaluate_res2.py"]
    assert len(refcoco) == 1 and not refcoco[0]["cot"]
    cot, plain = _templates(upstream_repo, "eval/evaluate_res2.py")
    for name in ("refcoco", "refcoco-upstream", "refcoco-demo"):
        assert manifest.VARIANTS[name].template == plain
    cot, plain = _templates(upstream_repo, "eval/evaluate_reasonseg.py")
    assert manifest.VARIANTS["reasonseg-cot"].template == cot and manifest.VARIANTS["reasonseg-ft"].template == plain
    assert manifest.DEFAULT_VARIANT == "refcoco"


def test_groundingsuite_row_names_the_checkpoint_eval_sh_runs(upstream_repo: Path) -> None:
    runs = _runs(upstream_repo)
    [gs] = [r for r in runs if r["script"] == "eval/evaluate_res2_gs.py"]
    [reasonseg] = [r for r in runs if r["script"] == "eval/evaluate_reasonseg.py" and not r["cot"]]
    [reasonseg_cot] = [r for r in runs if r["script"] == "eval/evaluate_reasonseg.py" and r["cot"]]
    [refcoco] = [r for r in runs if r["script"] == "eval/evaluate_res2.py"]
    assert gs["model_path"] == reasonseg["model_path"] and not gs["cot"]
    assert gs["model_path"] not in (refcoco["model_path"], reasonseg_cot["model_path"])
    checkpoint = manifest.VARIANTS["reasonseg-ft"].checkpoint  # evaluate_reasonseg.py without --cot
    [row] = [line for line in README.read_text(encoding="utf-8").splitlines()
             if line.startswith("| LENS-3B, `groundingsuite`")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert f"`{checkpoint}`" in cells[4], cells[4]
    assert "OuyBin/LENS`" not in cells[4] and "OuyBin/LENS_ReasonSeg_CoT" not in cells[4]
    _, plain = _templates(upstream_repo, "eval/evaluate_res2_gs.py")
    assert manifest.VARIANTS["reasonseg-ft"].template == plain
