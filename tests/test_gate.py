"""The regression gate and baselines: exit codes on crafted runs, baseline files, the committed baseline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helper_runs import consistent, write_crafted_run

from harness.cli import main
from harness.data.conventions import Conventions
from harness.data.suites import load_suite
from harness.publish import baseline as baselines
from harness.publish.gate import EXIT_INCOMPARABLE, EXIT_INPUT_ERROR, EXIT_PASS, EXIT_REGRESSION, gate, markdown, paired_spread

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "suites" / "baselines" / "shapes-reasoner.json"
N = 200
Pairs = list[tuple[int, int]]  # (intersection, union) per sample


def _scores(seed: int = 0, n: int = N) -> Pairs:
    rng = np.random.default_rng(seed)
    union = rng.integers(400, 1600, size=n)
    inter = (union * rng.uniform(0.55, 1.0, size=n)).astype(int)
    return [(int(i), int(u)) for i, u in zip(inter, union)]


def write_run(root: Path, splits: dict[str, Pairs], model: str = "m", fingerprint: str = "suitefp", split_prefix: str = "s",
              conventions: dict[str, Any] | None = None, model_fp: str = "modelfp", ids: Sequence[str] | None = None,
              limit: int | None = None, failed: int = 0) -> Path:
    """A run directory of these (intersection, union) pairs that the verifying reader accepts: manifest, one
    JSONL log per split whose scores obey the invariants, results.json derived from them (tests/helper_runs.py).

    ``limit`` is recorded in the manifest's config as ``--limit`` would (each split then a part of a split of
    twice its size); the first ``failed`` samples of each split are failed predictions."""
    conv = Conventions.from_dict(conventions)
    logs = {split: [(sid, consistent(i, u, conv, failed=k < failed)) for k, (sid, (i, u)) in enumerate(zip(
        list(ids) if ids is not None else [f"{split_prefix}/{split}/{k:04d}" for k in range(len(pairs))], pairs))]
        for split, pairs in splits.items()}
    sizes = {split: 2 * len(pairs) for split, pairs in splits.items()} if limit else None
    return write_crafted_run(root, {model: logs}, suite={"name": "crafted", "version": "1", "fingerprint": fingerprint},
                             conventions=conventions, models={model: {"adapter": model, "fingerprint": model_fp}},
                             limit=limit, split_sizes=sizes)


@pytest.fixture()
def base_run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "base", {"val": _scores(0), "test": _scores(1)})


def _gate(run: Path, base: Path, *extra: str, md: bool = True) -> tuple[int, str, str]:
    """Exit code, stdout, stderr; stdout is the Markdown table (``--markdown -``) unless md=False."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["gate", str(run), "--baseline", str(base), *extra, *(["--markdown", "-"] if md else [])])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_identical_run_passes_with_zero_delta(tmp_path: Path, base_run: Path) -> None:
    run = write_run(tmp_path / "run", {"val": _scores(0), "test": _scores(1)})
    code, out, _ = _gate(run, base_run, "--metric", "ciou,giou")
    assert code == EXIT_PASS
    assert "| m | val | cIoU |" in out and "| m | test | gIoU |" in out
    assert out.count("+0.00 | [+0.00, +0.00]") == 4
    assert "✅ pass" in out.splitlines()[0]


def test_real_drop_fails(tmp_path: Path, base_run: Path) -> None:
    worse = [(0, u) if k % 4 == 0 else (i, u) for k, (i, u) in enumerate(_scores(0))]  # a quarter of val now misses
    run = write_run(tmp_path / "run", {"val": worse, "test": _scores(1)})
    code, out, _ = _gate(run, base_run)
    assert code == EXIT_REGRESSION
    assert "❌ 1 regression" in out
    val = next(line for line in out.splitlines() if line.startswith("| m | val |"))
    assert "❌ FAIL" in val
    cells = [c.strip() for c in val.split("|")]
    assert float(cells[6]) < -10  # delta in points
    lo, hi = (float(v) for v in cells[7].strip("[]").split(","))
    assert lo <= float(cells[6]) <= hi < 0
    assert "✅ pass" in next(line for line in out.splitlines() if line.startswith("| m | test |"))


def test_two_sided_fails_a_real_rise(tmp_path: Path, base_run: Path) -> None:
    better = [(u, u) if k % 4 == 0 else (i, u) for k, (i, u) in enumerate(_scores(0))]
    run = write_run(tmp_path / "run", {"val": better, "test": _scores(1)})
    code, out, _ = _gate(run, base_run)
    assert code == EXIT_PASS and "| m | val | cIoU |" in out
    code, out, _ = _gate(run, base_run, "--two-sided")
    assert code == EXIT_REGRESSION and "FAIL: rose (two-sided)" in out and "|Δ| > 0.5" in out


def test_noise_within_tolerance_passes(tmp_path: Path, base_run: Path) -> None:
    noisy = list(_scores(0))
    for k in (3, 50, 120):  # a few samples a little worse, one a little better
        i, u = noisy[k]
        noisy[k] = (i - 20, u) if k != 120 else (min(u, i + 10), u)
    run = write_run(tmp_path / "run", {"val": noisy, "test": _scores(1)})
    code, out, _ = _gate(run, base_run)
    assert code == EXIT_PASS
    assert "within tolerance" in out


def test_large_but_insignificant_drop_passes_and_tolerance_only_baseline_fails(tmp_path: Path) -> None:
    """One huge sample lost: the drop exceeds --max-drop, but one sample is not evidence (its
    absence from about a third of the resamples puts 0 inside the interval). A baseline without
    per-sample scores cannot tell, so the plain tolerance fails it."""
    scores = _scores(0, n=60)
    scores[7] = (20000, 20000)
    base = write_run(tmp_path / "base", {"val": scores})
    lost = list(scores)
    lost[7] = (0, 20000)
    run = write_run(tmp_path / "run", {"val": lost})
    code, out, _ = _gate(run, base)
    assert code == EXIT_PASS, out
    assert "drop not significant" in out

    metrics_only = tmp_path / "metrics-only.json"
    assert main(["baseline", "save", str(base), "--to", str(metrics_only), "--metrics-only"]) == 0
    assert "scores" not in json.loads(metrics_only.read_text())
    code, out, _ = _gate(run, metrics_only)
    assert code == EXIT_REGRESSION
    assert "FAIL (tolerance only)" in out and "plain tolerance" in out
    # A results.json on its own (copied out of its run) is a metrics-only baseline too; inside its run it is the run.
    alone = tmp_path / "committed-results.json"
    alone.write_text((base / "results.json").read_text())
    assert _gate(run, alone)[0] == EXIT_REGRESSION
    assert _gate(run, base / "results.json")[0] == EXIT_PASS


def test_incomparable_suite_fingerprint(tmp_path: Path, base_run: Path) -> None:
    run = write_run(tmp_path / "run", {"val": _scores(0), "test": _scores(1)}, fingerprint="otherfp")
    code, out, err = _gate(run, base_run)
    assert code == EXIT_INCOMPARABLE
    assert "not comparable" in out and "suite fingerprint differs" in out and "otherfp" in out and "suitefp" in out
    assert "not comparable" in err


def test_incomparable_sample_ids(tmp_path: Path, base_run: Path) -> None:
    run = write_run(tmp_path / "run", {"val": _scores(0), "test": _scores(1)}, split_prefix="other")
    code, out, _ = _gate(run, base_run, "--splits", "val")
    assert code == EXIT_INCOMPARABLE
    assert "m/val: different sample ids" in out
    assert "missing from the run: s/val/0000" in out and "not in the baseline: other/val/0000" in out
    # A run that stopped early (fewer samples) is not comparable either.
    short = write_run(tmp_path / "short", {"val": _scores(0)[:150], "test": _scores(1)})
    code, out, _ = _gate(short, base_run)
    assert code == EXIT_INCOMPARABLE and "150 ids in the run vs 200 in the baseline" in out


def test_incomparable_conventions_and_missing_split(tmp_path: Path, base_run: Path) -> None:
    run = write_run(tmp_path / "run", {"val": _scores(0)}, conventions={"empty_union": "zero"})
    code, out, _ = _gate(run, base_run)
    assert code == EXIT_INCOMPARABLE
    assert "conventions differ: empty_union run='zero' baseline='one'" in out
    assert "m/test: the run has no results for it" in out
    code, out, _ = _gate(run, base_run, "--models", "nope")
    assert code == EXIT_INCOMPARABLE and "model 'nope' is not in the baseline" in out


def test_a_convention_a_baseline_predates_is_its_default(tmp_path: Path, base_run: Path) -> None:
    """A baseline written before a convention existed was scored with that convention's default."""
    doc = json.loads((base_run / "results.json").read_text())
    doc["conventions"].pop("targeted_empty_union")
    (base_run / "results.json").write_text(json.dumps(doc))
    run = write_run(tmp_path / "run", {"val": _scores(0), "test": _scores(1)})
    code, out, _ = _gate(run, base_run)
    assert code == EXIT_PASS, out
    run = write_run(tmp_path / "rela", {"val": _scores(0), "test": _scores(1)}, conventions={"targeted_empty_union": "zero"})
    code, out, _ = _gate(run, base_run)
    assert code == EXIT_INCOMPARABLE and "conventions differ: targeted_empty_union run='zero' baseline='same'" in out


def test_baseline_file_and_run_give_the_same_verdict(tmp_path: Path, base_run: Path) -> None:
    saved = tmp_path / "baseline.json"
    assert main(["baseline", "save", str(base_run), "--to", str(saved)]) == 0
    data = json.loads(saved.read_text())
    assert data["schema"] == "harness.baseline" and data["results"]["m"]["val"]["ciou"] > 0
    assert data["ids"]["m"]["val"]["n"] == N
    assert saved.stat().st_size < 20_000  # 400 samples: a few KB
    from_file, from_run = baselines.load(saved), baselines.load(base_run)
    for split in ("val", "test"):
        a, b = from_file.scores["m"][split], from_run.scores["m"][split]
        assert a.ids == b.ids
        for col in ("inter", "union", "iou", "in_ciou"):
            np.testing.assert_array_equal(getattr(a, col), getattr(b, col))

    worse = [(i // 2, u) if k % 3 == 0 else (i, u) for k, (i, u) in enumerate(_scores(1))]
    run = write_run(tmp_path / "run", {"val": _scores(0), "test": worse})
    outputs = []
    for base in (saved, base_run):
        code, out, _ = _gate(run, base, "--metric", "ciou,giou")
        assert code == EXIT_REGRESSION
        outputs.append([line for line in out.splitlines() if line.startswith("| m |")])
    assert outputs[0] == outputs[1]
    assert sum("FAIL" in line for line in outputs[0]) == 2  # test cIoU and gIoU


def test_an_official_number_the_scores_do_not_give_is_not_comparable(tmp_path: Path, base_run: Path) -> None:
    """Same per-sample scores, a different official number (a hand edit, a broken reduction): the reader
    derives every number from the scores, so the run is refused, naming results.json and the fix."""
    run = write_run(tmp_path / "run", {"val": _scores(0), "test": _scores(1)})
    doc = json.loads((run / "results.json").read_text())
    doc["results"]["m"]["val"]["ciou"] -= 2.0
    (run / "results.json").write_text(json.dumps(doc))
    code, _, err = _gate(run, base_run)
    assert code == EXIT_INCOMPARABLE
    assert f"{run / 'results.json'} says what its logs do not: m/val ciou is" in err and f"harness report {run}" in err


def test_input_errors_exit_3(tmp_path: Path, base_run: Path) -> None:
    assert _gate(tmp_path / "missing", base_run)[0] == EXIT_INPUT_ERROR
    assert _gate(base_run, tmp_path / "missing.json")[0] == EXIT_INPUT_ERROR
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something else"}')
    code, _, err = _gate(base_run, bad)
    assert code == EXIT_INPUT_ERROR and "not a harness baseline" in err
    code, _, err = _gate(base_run, base_run, "--max-drop", "-1")
    assert code == EXIT_INPUT_ERROR
    code, _, err = _gate(base_run, base_run, "--bogus-flag")  # usage errors are not "not comparable"
    assert code == EXIT_INPUT_ERROR and "unrecognized arguments" in err


def test_markdown_escapes_table_breakers(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base", {"val": _scores(0)}, model="a|b<i>")
    run_b, base_b = baselines.load(base), baselines.load(base)
    result = gate(run_b, base_b)
    text = markdown(result, run_b, base_b, ["ciou"], 0.5, 1000)
    assert "| a\\|b\\<i> | val |" in text  # the tag cannot open: escaped as CommonMark does, not as an HTML entity


def test_paired_spread_needs_aligned_ids(base_run: Path) -> None:
    b = baselines.load(base_run)
    with pytest.raises(ValueError):
        paired_spread(b.scores["m"]["val"], b.scores["m"]["test"], "ciou")
    assert paired_spread(b.scores["m"]["val"], b.scores["m"]["val"], "giou") == (0.0, 0.0)


def test_committed_shapes_baseline_matches_the_shapes_suite() -> None:
    """CI gates a fresh shapes-reasoner run against this file; if shapes.yaml changes, re-save it:
    harness run --models shapes-reasoner --suite shapes --out /tmp/b --no-report &&
    harness baseline save /tmp/b --to suites/baselines/shapes-reasoner.json"""
    base = baselines.load(COMMITTED)
    suite = load_suite("shapes")
    assert base.suite["fingerprint"] == suite.fingerprint, "shapes.yaml changed: re-save the committed baseline (see docstring)"
    assert base.conventions == suite.conventions.to_dict()
    assert set(base.scores["shapes-reasoner"]) == set(suite.default_splits)
    assert COMMITTED.stat().st_size < 50_000


def test_unknown_names_exit_2_with_the_valid_ones(tmp_path: Path, base_run: Path) -> None:
    run = write_run(tmp_path / "run", {"val": _scores(0), "test": _scores(1)})
    code, out, err = _gate(run, base_run, "--metric", "nosuch", md=False)
    assert code == EXIT_INCOMPARABLE
    assert "unknown metric 'nosuch' (valid: " in out and "ciou, giou" in out and "prec@0.5" in out and "unknown metric" not in err
    code, out, _ = _gate(run, base_run, "--metric", "cIoU,GIOU")  # names are matched case-insensitively
    assert code == EXIT_PASS and "| m | val | cIoU |" in out and "| m | val | gIoU |" in out
    code, out, _ = _gate(run, base_run, "--splits", "vall", md=False)
    assert code == EXIT_INCOMPARABLE and "split 'vall' is not in the baseline" in out and "(valid: test, val)" in out
    code, out, _ = _gate(run, base_run, "--models", "nope", md=False)
    assert code == EXIT_INCOMPARABLE and "model 'nope' is not in the baseline" in out and "(valid: m)" in out


def test_limit_run_is_not_comparable_without_allow_partial(tmp_path: Path, base_run: Path) -> None:
    short = write_run(tmp_path / "short", {"val": _scores(0)[:40], "test": _scores(1)[:40]}, limit=40)
    code, out, err = _gate(short, base_run, md=False)
    assert code == EXIT_INCOMPARABLE
    assert "m/val: partial: run with --limit 40 (40 samples), baseline over the full split" in out
    assert "--allow-partial" in out and "--allow-partial" not in err and "error: not comparable (" in err
    # Allowed: gated on the 40 samples both have, the baseline recomputed on them, and the table says so.
    code, out, _ = _gate(short, base_run, "--allow-partial", "--metric", "ciou,giou")
    assert code == EXIT_PASS
    assert out.count("+0.00 | [+0.00, +0.00] | 40 | ✅ pass [partial: run with --limit 40") == 4
    assert "baseline recomputed on the run's 40 of its 200 samples" in out
    # A metric that cannot be recomputed on the subset gates nothing: that is not a pass.
    code, out, _ = _gate(short, base_run, "--allow-partial", "--metric", "prec@0.5", md=False)
    assert code == EXIT_INCOMPARABLE and "nothing gated" in out
    # A baseline saved from a run with the same --limit is a like-for-like comparison.
    same = write_run(tmp_path / "same", {"val": _scores(0)[:40], "test": _scores(1)[:40]}, limit=40)
    assert _gate(short, same)[0] == EXIT_PASS


def test_incomplete_and_failing_runs_are_not_comparable(tmp_path: Path, base_run: Path) -> None:
    logs = {"m": {split: [(f"s/{split}/{k:04d}", consistent(i, u)) for k, (i, u) in enumerate(_scores(seed))]
                  for split, seed in (("val", 0), ("test", 1))}}
    run = write_crafted_run(tmp_path / "run", logs, split_sizes={"val": 250})  # 50 samples of val never predicted
    code, out, _ = _gate(run, base_run, md=False)
    assert code == EXIT_INCOMPARABLE and "m/val: partial: 200 of 250 predicted" in out

    failing = write_run(tmp_path / "failing", {"val": _scores(0), "test": _scores(1)}, failed=3)
    code, out, _ = _gate(failing, base_run, md=False)
    assert code == EXIT_INCOMPARABLE and "m/val: 3 of 200 samples failed (over --max-failed 0)" in out
    code, out, _ = _gate(failing, base_run, "--max-failed", "0.05")
    assert code == EXIT_PASS and "failed" not in out
    code, out, _ = _gate(failing, base_run, "--allow-partial")
    assert code == EXIT_PASS and "✅ pass" in out and "[3 of 200 samples failed" in out
    assert _gate(failing, base_run, "--max-failed", "5")[0] == EXIT_INPUT_ERROR


def test_terminal_gets_plain_text_and_markdown_only_on_request(tmp_path: Path, base_run: Path) -> None:
    run = write_run(tmp_path / "run", {"val": _scores(0), "test": _scores(1)}, model_fp="changed")
    code, out, _ = _gate(run, base_run, md=False)
    assert code == EXIT_PASS
    assert out.splitlines()[0].startswith("harness gate: pass (cIoU")
    assert "|" not in out.replace("|delta|", "") and "&gt;" not in out and "###" not in out
    assert "model fingerprint modelfp -> changed" in out
    row = next(line for line in out.splitlines() if line.startswith("m "))
    assert row.split()[:6] == ["m", "val", "cIoU", row.split()[3], row.split()[3], "+0.00"]
    md = tmp_path / "gate.md"
    code, out2, _ = _gate(run, base_run, "--markdown", str(md), md=False)
    assert out2 == out and md.read_text().startswith("### harness gate: ✅ pass") and "| m | val | cIoU |" in md.read_text()
