"""``harness report RUN_DIR``: recompute results.json from the logs and render the report.

The suite comes from the manifest (its file if it still exists, else the built-in of that
name); the fingerprint must match, so a report is never drawn against other ground truth.
"""

from __future__ import annotations

from pathlib import Path

from harness.manifest import check_compatible
from harness.results import write_results
from harness.runner import load_samples
from harness.store import RunDir, StoreError
from harness.suites import load_suite


def report_run(run_dir: Path, data_root: Path | None = None) -> Path:
    rd = RunDir(run_dir)
    manifest = rd.manifest()
    if manifest is None:
        raise StoreError(f"{run_dir} is not a run directory (no manifest.json)")
    suite_info = manifest["suite"]
    path = Path(suite_info.get("path", ""))
    suite = load_suite(str(path) if path.is_file() else suite_info["name"])
    check_compatible(manifest, suite, {}, run_dir)
    config = manifest.get("config", {})
    root = data_root or (Path(config["data_root"]) if config.get("data_root") else None)
    samples = load_samples(suite, manifest["splits"], root, config.get("limit"))
    write_results(rd, suite, samples, bootstrap_rounds=int(config.get("bootstrap_rounds", 1000)))
    from harness.report import render_report

    return render_report(run_dir, {split: {s.id: s for s in ss} for split, ss in samples.items()})

