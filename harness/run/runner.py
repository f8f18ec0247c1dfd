"""Run models over a suite's splits: predict, score, store; resumable, shardable, failure-tolerant.

Every prediction is scored as it arrives and appended to its log, so a killed run resumes
where it stopped (at any world size: samples found in any log are skipped). With sharding
each rank writes its own log; the last rank to finish (or ``harness merge``) merges them
after checking the union of ids against the split, then results and report are written.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.adapter import Adapter
from harness.data.conventions import Conventions
from harness.data.samples import data_digests, load_samples
from harness.data.suites import Suite, load_suite
from harness.errors import HarnessError
from harness.records import locks, logline
from harness.records.manifest import check_compatible, fingerprint, new_manifest, updating
from harness.records.reader import StoredRun
from harness.records.store import PredictionLog, RunDir, StoreError, read_json
from harness.records.versions import check_current, scoring_version
from harness.run.config import RunConfig
from harness.run.finish import RunOutcome, finished_outcome, record_data_counts, resume_inputs
from harness.run.preflight import prepare_adapters
from harness.run.progress import LineProgress
from harness.run.remote import collect_stats, counters_since
from harness.run.sharding import Shard, shard_from_env
from harness.types import Sample

if TYPE_CHECKING:
    from harness.run.predict import Predicted

# Prediction, scoring, merging (numpy, PIL, pycocotools, tqdm) are imported where they are used, so that
# resuming a finished run, which needs none of them, starts fast.


def records(ready: list[tuple[Sample, Predicted]], conv: Conventions) -> list[dict[str, Any]]:
    """The log records of a batch's (sample, prediction) pairs, scored together (harness.score.scoring.score_samples)."""
    from harness.score.scoring import score_samples

    scores = score_samples([(p.prediction, s.gt, s.no_target) for s, p in ready], conv)
    return [logline.build(sample.id, sample.expression, predicted.prediction, score, predicted.oom_halvings)
            for (sample, predicted), score in zip(ready, scores)]


@dataclass(frozen=True)
class SplitProgress:
    predicted: int
    failed: int
    oom_halvings: int
    seconds: float


def run_model_split(
    adapter: Adapter, model: str, split: str, samples: list[Sample], log: PredictionLog, done_elsewhere: set[str],
    conv: Conventions, batch_size: int, timeout: float | None = None, fail_fast: bool = False, retry_failed: bool = False,
    device: str | None = None,
) -> SplitProgress:
    """Predict every sample found in no log yet (with ``retry_failed``, also those whose last line
    failed), appending to ``log``: a new line for an id supersedes its earlier one. ``device`` is
    the one the adapter was loaded on (its model thread selects it)."""
    from tqdm import tqdm

    from harness.run.predict import predict_batches

    done = log.done(retry_failed) | done_elsewhere
    todo = [s for s in samples if s.id not in done]
    predicted = failed = halvings = 0
    start = time.perf_counter()
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), unit="sample", desc=f"{model} {split}",
               disable=None, file=sys.stderr, dynamic_ncols=True)
    lines = LineProgress(model, split, len(samples), len(samples) - len(todo))  # when stderr is no terminal
    # What exists now (the samples, the log's index, the modules) lives through the split: frozen, it
    # is not traversed again by every full collection that the growing index triggers (a few us a
    # sample of a zero-cost model), and it is an ordinary object again once the split is done.
    gc.freeze()
    try:
        for ready in predict_batches(adapter, todo, batch_size, timeout, fail_fast, exif=conv.exif, device=device):
            # A batch's lines in one write, before the next batch is asked for (why: PredictionLog.append_many).
            log.append_many(records(ready, conv))
            predicted += len(ready)
            for _, result in ready:
                failed += result.prediction.failed
                halvings = max(halvings, result.oom_halvings)
            bar.update(len(ready))
            lines.update(len(ready))
    finally:
        gc.unfreeze()
        bar.close()
        lines.close()
        log.close()
    return SplitProgress(predicted, failed, halvings, time.perf_counter() - start)


def default_out(suite: Suite) -> Path:
    return Path("runs") / suite.name


def _rank(shard: Shard | None) -> str:
    """The manifest's name of this process's part of the work: ``i-of-n``, or ``all`` unsharded."""
    return str(shard) if shard else "all"


def run(config: RunConfig, argv: list[str] | None = None, render: bool = True) -> RunOutcome:
    """Run every model of the config over the suite's splits, then write results and report."""
    suite = load_suite(config.suite, config.protocol)
    splits = suite.select_splits(list(config.splits))
    out = config.out or default_out(suite)
    run_dir = RunDir(out)
    shard = config.shard or shard_from_env()
    # Every model is built and checked (options, files, worker environment) before any predicts,
    # and before the run directory is touched: a model that cannot start costs no one's time.
    adapters = prepare_adapters(config.models, out, shard.suffix if shard else None, config.fail_fast)
    for a in adapters.values():  # an adapter that decodes images itself (a worker) does it by the suite's convention
        a.exif = suite.conventions.exif
    model_entries = {
        name: {"adapter": spec.adapter, "description": a.info.description, "config": a.config(), "fingerprint": fingerprint(a.config()),
               # a reference line (empty, full, an oracle): reports never call it the best (AdapterInfo.reference)
               **({"reference": True} if a.info.reference else {}),
               # boxes are stored in pixels; the report names the space the model answered in (pixel: the default)
               **({"box_space": a.info.box_space} if a.info.box_space != "pixel" else {})}
        for (name, a), spec in zip(adapters.items(), config.models)
    }
    try:
        with locks.held(run_dir.writer_lock_path, shared=shard is not None, what=str(out)):
            # What each split's ground truth comes from, without loading it (a stat per annotation file).
            known = (run_dir.manifest() or {}).get("splits") or []
            data = data_digests(suite, [s for s in suite.splits if s in set(known) | set(splits)], config.data_root)

            with updating(run_dir) as m:
                if not m.doc:
                    config_dict = {k: (str(v) if isinstance(v, (Path, Shard)) else v) for k, v in asdict(config).items()}
                    m.doc.update(new_manifest(out.name, suite, config_dict, argv or []))
                check_compatible(m.doc, suite, model_entries, out)
                # Results (and report, gate, summary) cover the first --limit samples of this command:
                # the limit the stored samples are scored under is the latest one, not the first run's.
                m.doc["config"]["limit"] = config.limit
                m.doc["config"]["focus"] = config.focus  # the report's view, the latest command's (harness.run.config)
                # Never append to (or finish) logs scored by other scoring code, or against other ground
                # truth than the current data: refused before anything is predicted.
                check_current(run_dir, m.doc, suite.conventions, data=data)
                for name in model_entries:  # recorded before the first line is written, so no log is ever unversioned
                    for split in splits:
                        m.record_version(run_dir, run_dir.log_path(name, split, shard.suffix if shard else None),
                                         scoring_version(suite.conventions))
                for split in splits:  # the logs of these splits hold (or will hold) scores against this data
                    m.record_data(split, data[split])
                asked = m.doc.setdefault("asked", {})  # what every command asked for: the run is finished when all is stored
                for name in model_entries:
                    asked[name] = list(dict.fromkeys([*asked.get(name, []), *splits]))
                m.doc["splits"] = sorted(set(m.doc["splits"]) | set(splits), key=lambda s: list(suite.splits).index(s))
                for name, entry in model_entries.items():  # an unchanged model keeps the counters of the runs that predicted
                    kept = m.doc["models"].get(name, {})
                    same = kept.get("fingerprint") == entry["fingerprint"]
                    m.doc["models"][name] = {**entry, **{k: kept[k] for k in ("efficiency", "runtime") if same and k in kept}}
                    # A rank's load error is cleared by that rank's next start, not by another rank's.
                    m.set_load_errors(name, {k: v for k, v in (kept.get("load_errors") or {}).items()
                                             if shard and k != str(shard) and k.endswith(f"/{shard.count}")})
            manifest = m.doc
            # What decides the samples, so that a finished run resumed with nothing changed is seen to be
            # finished before they are loaded (seconds at 100k samples) or a score index is read.
            resume = resume_inputs(data, config.limit, config.data_root)
            if shard is None and all(a.replay_ids() is None for a in adapters.values()):
                done = finished_outcome(run_dir, suite, config.bootstrap_rounds, resume, render)
                # No rank marks needed: a part left "running" by a killed run would have changed the manifest.
                if done is not None and not (config.retry_failed and _any_failed(run_dir)):
                    return done
            # Results cover every split this directory holds, including ones run by earlier commands.
            sizes: dict[str, int] = {}
            counts: dict[str, dict[str, int]] = {}
            samples = load_samples(suite, manifest["splits"], config.data_root, config.limit, sizes, counts)
            # What a --limit run is part of ("partial: 40 of 160"), and the data against the official counts.
            stored = StoredRun(out, config.data_root, run_dir)  # the run as the reader sees it, with this command's RunDir
            record_data_counts(stored, suite, sizes, counts)
            for name, adapter in adapters.items():  # a wrong replay file is found before any model predicts
                _check_replay_ids(adapter, name, samples)
            device = _rank_device(config.device)
            for name, adapter in adapters.items():
                if not _has_work(config, run_dir, name, splits, samples, shard):
                    # Every sample of this model is stored already (a finished run resumed): its
                    # weights are not loaded for nothing, minutes on a GPU for a 3B model.
                    for split in splits:
                        log_path = run_dir.log_path(name, split, shard.suffix if shard else None)
                        with locks.held(run_dir.log_lock_path(log_path), what=f"{log_path}"):
                            with updating(run_dir) as m:
                                m.mark(name, split, _rank(shard), "running")  # records a killed earlier run, as always
                            with updating(run_dir) as m:
                                m.mark(name, split, _rank(shard), "done")
                    adapter.close()
                    continue
                try:
                    adapter.load(device)
                except Exception as exc:  # weights missing, out of memory while loading, a worker that dies loading
                    if config.fail_fast:
                        raise
                    _could_not_run(run_dir, name, exc, shard)
                else:
                    _run_model(config, run_dir, suite, splits, samples, shard, name, adapter, device)
                adapter.close()  # free this model's memory (and its worker) before the next one loads
    finally:
        for adapter in adapters.values():  # after an error too: no worker outlives the command
            adapter.close()
    if shard is not None and _barrier() and shard.index != 0:
        return RunOutcome(run_dir.root, None, None, pending="rank 0 merges the shards and writes the results")
    from harness.run.merge import merge_run

    # A sharded run (each rank its own log, rank 0 merging) takes the full path on every resume.
    return merge_run(stored, samples, render, reuse=True, data=data,
                     resume=resume if shard is None else None)


def _any_failed(run_dir: RunDir) -> bool:
    """Whether results.json counts a failed sample: ``--retry-failed`` then has work."""
    try:
        doc = read_json(run_dir.results_path)
    except (OSError, ValueError, StoreError):
        return True
    return any(int(res.get("n_failed") or 0) for by_split in (doc.get("results") or {}).values() for res in by_split.values())


def _could_not_run(run_dir: RunDir, name: str, exc: Exception, shard: Shard | None) -> None:
    """A model that failed to load: the others still run; the manifest (hence results.json, the report
    and the run's exit status, and a sharded run's wait for its merge) says why, until a later command
    (on that rank) runs the model."""
    reason = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
    where = f" on rank {shard}" if shard else ""
    print(f"error: model {name!r} could not run{where}: {reason}", file=sys.stderr)
    with updating(run_dir) as m:
        m.record_load_error(name, _rank(shard), reason)


def _has_work(config: RunConfig, run_dir: RunDir, name: str, splits: list[str], samples: dict[str, list[Sample]],
              shard: Shard | None) -> bool:
    """Whether this model has a sample left to predict on this rank (as ``run_model_split`` decides
    it, from the score indexes, which it then reads from the RunDir's cache)."""
    for split in splits:
        mine = shard.take(samples[split]) if shard else samples[split]
        log = run_dir.log(name, split, shard.suffix if shard else None)
        done = log.done(config.retry_failed) | _done_elsewhere(run_dir, name, split, log.path, config.retry_failed)
        if any(s.id not in done for s in mine):
            return True
    return False


def _run_model(config: RunConfig, run_dir: RunDir, suite: Suite, splits: list[str], samples: dict[str, list[Sample]],
               shard: Shard | None, name: str, adapter: Adapter, device: str) -> None:
    """One loaded model over the chosen splits (this rank's slice of each)."""
    counted = collect_stats(adapter)
    rank = _rank(shard)
    for split in splits:
        mine = shard.take(samples[split]) if shard else samples[split]
        log = run_dir.log(name, split, shard.suffix if shard else None)
        with locks.held(run_dir.log_lock_path(log.path), what=f"{log.path}"):
            with updating(run_dir) as m:
                m.mark(name, split, rank, "running")
            others = _done_elsewhere(run_dir, name, split, log.path, config.retry_failed)
            retried = _failed_ids(run_dir, name, split, mine) if config.retry_failed else 0
            progress = run_model_split(adapter, name, split, mine, log, others, suite.conventions,
                                       config.batch_size, config.timeout, config.fail_fast, config.retry_failed, device)
            now_counted = collect_stats(adapter)
            # The engine's own counts where the adapter (or its worker) does not keep them.
            spent = {"samples": progress.predicted, "predict_seconds": round(progress.seconds, 3),
                     **counters_since(now_counted, counted)}
            counted = now_counted
            with updating(run_dir) as m:
                if retried:
                    m.add_event("retried_failed", model=name, split=split, samples=retried)
                if progress.predicted:  # a resume with nothing left keeps the counters of the run that predicted
                    m.record_efficiency(name, split, rank, spent, adapter.runtime_info())
                m.mark(name, split, rank, "done")
                if progress.oom_halvings:
                    m.add_event("oom_halved", model=name, split=split, max_halvings=progress.oom_halvings)


def _check_replay_ids(adapter: Adapter, name: str, samples: dict[str, list[Sample]]) -> None:
    """A replay file none of whose ids is in the suite is the wrong file: an error, not a run of
    failures. Ids the suite does not have are counted and reported, never silently dropped."""
    held = adapter.replay_ids()
    if held is None:
        return
    wanted = {s.id for split in samples.values() for s in split}
    unknown = sorted(held - wanted)
    where = adapter.options.get("path", name)
    if held and len(unknown) == len(held):
        raise HarnessError(f"{where}: none of its {len(held)} ids is a sample of the chosen splits "
                           f"({', '.join(sorted(samples))}), e.g. {unknown[0]!r}; wrong file, suite or splits?")
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        print(f"warning: {where}: {len(unknown)} of {len(held)} ids are not samples of the chosen splits, ignored: {shown}",
              file=sys.stderr)


def _rank_device(device: str) -> str:
    """Under torchrun each process takes its own GPU: ``cuda`` -> ``cuda:<LOCAL_RANK>``."""
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{local}" if device == "cuda" and local is not None else device


def _barrier() -> bool:
    """Under torchrun with torch.distributed available, wait for every rank (gloo works on CPU).

    Returns False when there is no process group to wait on: then whichever rank finishes
    last finds every sample covered and merges.
    """
    if "MASTER_ADDR" not in os.environ:
        return False
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()
    return True


def _failed_ids(run_dir: RunDir, model: str, split: str, samples: list[Sample]) -> int:
    """How many of ``samples`` are recorded as failed (their last line failed, and no log has a success)."""
    failed: set[str] = set()
    ok: set[str] = set()
    for p in (run_dir.log_path(model, split), *run_dir.shard_logs(model, split)):
        for i, e in run_dir.index(p).latest().items():
            (failed if e.failed else ok).add(i)
    return sum(s.id in failed and s.id not in ok for s in samples)


def _done_elsewhere(run_dir: RunDir, model: str, split: str, own: Path, retry_failed: bool) -> set[str]:
    """Ids stored in this model x split's other logs (the merged log, other shards); with
    ``retry_failed``, less those whose last line there failed."""
    return {i for p in _other_logs(run_dir, model, split, own)
            for i, e in run_dir.index(p).latest().items() if not (retry_failed and e.failed)}


def _other_logs(run_dir: RunDir, model: str, split: str, own: Path) -> list[Path]:
    return [p for p in (run_dir.log_path(model, split), *run_dir.shard_logs(model, split)) if p != own]
