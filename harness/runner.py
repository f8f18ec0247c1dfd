"""Run models over a suite's splits: predict, score, store; resumable, failure-tolerant.

Samples that share an image are grouped so the image is decoded once, and batches never
straddle two images (an adapter can encode the image once for all its sentences). Every
prediction is scored as it arrives and appended to the model's log, so a killed run resumes
where it stopped. A failure (unreadable image, adapter exception, malformed mask) fails its
samples with the reason and the run goes on.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness import masks
from harness.adapter import Adapter, box_to_pixels
from harness.config import RunConfig
from harness.conventions import Conventions
from harness.images import ImageError, load_image
from harness.manifest import check_compatible, fingerprint, new_manifest, now
from harness.registry import create_adapter
from harness.results import write_results
from harness.scoring import score_sample
from harness.sources import source_class
from harness.store import PredictionLog, RunDir
from harness.suites import Suite, load_suite
from harness.types import Prediction, Sample


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness")).expanduser()


def load_samples(suite: Suite, splits: Sequence[str], data_root: Path | None, limit: int | None = None) -> dict[str, list[Sample]]:
    source = source_class(suite.source_format)(suite.source_params, suite.conventions, data_root, cache_dir())
    out = {}
    for split in splits:
        samples = source.samples(split)
        out[split] = samples[:limit] if limit else samples
    return out


def image_batches(samples: Sequence[Sample], batch_size: int) -> Iterator[tuple[str, list[Sample]]]:
    """Group samples by image (first-appearance order), then cut each group into batches."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.image, []).append(s)
    for image, group in groups.items():
        for i in range(0, len(group), batch_size):
            yield image, group[i : i + batch_size]


def _finalize(pred: Prediction, sample: Sample, adapter: Adapter, height: int, width: int, seconds: float) -> Prediction:
    """Check the mask's size, convert the box to original pixels, fill in the timing."""
    changes: dict[str, Any] = {}
    if pred.seconds is None:
        changes["seconds"] = seconds
    if pred.mask is not None:
        try:
            changes["mask"] = masks.validate(pred.mask, height, width, f"{adapter.info.name} on {sample.id}")
        except masks.MaskError as exc:
            changes.update(mask=None, error=str(exc))
    if pred.box is not None:
        changes["box"] = box_to_pixels(pred.box, adapter.info.box_space, width, height)
    return replace(pred, **changes) if changes else pred


def predict_batch(adapter: Adapter, image_path: str, batch: list[Sample]) -> list[Prediction]:
    """One image's batch -> one prediction per sample; failures become failed predictions."""
    start = time.perf_counter()
    try:
        image = load_image(image_path)
    except ImageError as exc:
        return [Prediction(mask=None, error=str(exc)) for _ in batch]
    try:
        preds = adapter.predict(image, batch)
        if len(preds) != len(batch):
            raise RuntimeError(f"returned {len(preds)} predictions for {len(batch)} samples")
    except Exception as exc:  # a model error fails its batch, never the run
        msg = f"{adapter.info.name} failed on {image_path}: {type(exc).__name__}: {exc}"
        return [Prediction(mask=None, error=msg) for _ in batch]
    per_sample = (time.perf_counter() - start) / len(batch)
    h, w = image.shape[:2]
    return [_finalize(p, s, adapter, h, w, per_sample) for p, s in zip(preds, batch)]


def record(sample: Sample, pred: Prediction, conv: Conventions) -> dict[str, Any]:
    return {
        "id": sample.id,
        "expression": sample.expression,
        "prediction": pred.to_json(),
        "score": score_sample(pred, sample.gt, conv).to_json(),
    }


def run_model_split(adapter: Adapter, model: str, split: str, samples: list[Sample], log: PredictionLog,
                    conv: Conventions, batch_size: int) -> int:
    """Predict every sample not yet in the log; return how many were predicted now."""
    done = log.done()
    todo = [s for s in samples if s.id not in done]
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), unit="sample", desc=f"{model} {split}",
               disable=None, file=sys.stderr, dynamic_ncols=True)
    try:
        for image_path, batch in image_batches(todo, batch_size):
            for sample, pred in zip(batch, predict_batch(adapter, image_path, batch)):
                log.append(record(sample, pred, conv))
            bar.update(len(batch))
    finally:
        bar.close()
        log.close()
    return len(todo)


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    results_path: Path
    report_path: Path | None


def default_out(suite: Suite) -> Path:
    return Path("runs") / suite.name


def run(config: RunConfig, argv: list[str] | None = None, render: bool = True) -> RunOutcome:
    """Run every model of the config over the suite's splits, then write results and report."""
    suite = load_suite(config.suite)
    splits = suite.select_splits(list(config.splits))
    out = config.out or default_out(suite)
    run_dir = RunDir(out)
    adapters = {m.name: create_adapter(m.adapter, m.options) for m in config.models}
    model_entries = {
        name: {"adapter": spec.adapter, "description": a.info.description, "config": a.config(), "fingerprint": fingerprint(a.config())}
        for (name, a), spec in zip(adapters.items(), config.models)
    }
    manifest = run_dir.manifest()
    if manifest is None:
        config_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
        manifest = new_manifest(out.name, suite, config_dict, argv or [])
    else:
        check_compatible(manifest, suite, model_entries, out)
    # Results cover every split this directory holds, including ones run by earlier commands.
    manifest["splits"] = sorted(set(manifest["splits"]) | set(splits), key=lambda s: list(suite.splits).index(s))
    samples = load_samples(suite, manifest["splits"], config.data_root, config.limit)
    for name, adapter in adapters.items():
        manifest["models"][name] = model_entries[name]
        adapter.load(config.device)
        for split in splits:
            manifest["status"].setdefault(name, {})[split] = "running"
            manifest["updated"] = now()
            run_dir.write_manifest(manifest)
            run_model_split(adapter, name, split, samples[split], run_dir.log(name, split), suite.conventions, config.batch_size)
            manifest["status"][name][split] = "done"
    manifest["updated"] = now()
    run_dir.write_manifest(manifest)
    return finish(run_dir, suite, samples, config, render)


def finish(run_dir: RunDir, suite: Suite, samples: dict[str, list[Sample]], config: RunConfig, render: bool) -> RunOutcome:
    write_results(run_dir, suite, samples, bootstrap_rounds=config.bootstrap_rounds)
    report = None
    if render:
        from harness.report import render_report

        report = render_report(run_dir.root, {split: {s.id: s for s in ss} for split, ss in samples.items()})
    return RunOutcome(run_dir.root, run_dir.results_path, report)
