"""Does the accelerator wait? The idle time between two model calls, in process and in a worker.

A stand-in model (``bench-sleeper``, defined here) sleeps a fixed time per sample, as a GPU-bound
model waits on its kernels (a sleep releases the GIL as a CUDA wait does), and returns a 640x480
box mask per sample. It is ``multi_image``, so ``--batch-size 8`` fills every call with 8 samples
across images. Each call appends its start and end (``time.perf_counter``, the system's monotonic
clock, the same in every process) to a trace file. On the generated RefCOCO-shaped dataset of
``bench_engine.py`` (640x480 JPEGs), ``harness run`` is started as a command, in process and with
the model in a worker (``python:`` this interpreter), and from the trace this prints:

- model busy time: the calls' time summed, and over the time slept (``busy/sleep``: above 1 when the
  model, back from a device wait, waited for the GIL: with ``--waits N`` each call sleeps in N
  pieces, as a model that synchronises once per generated token gives up the GIL N times a call);
- loop span: from the start of the first call to the end of the last;
- idle share: the gaps between consecutive calls (end of one to start of the next), summed, over the span;
- mean gap per call: that sum over the number of gaps;
- time to the first model call: from the command's start (interpreter start-up, imports, the
  suite's samples from a warm index cache, the worker's start and load) to the first call.

Figures are the median of ``--repeats`` runs; the load average is printed beside them, since a
machine shared with other work moves them. Printed figures, not a timed test; the logs of every
run are checked to be identical but for timings.

Run: ``python benchmarks/bench_overlap.py [--ms 0,2,5] [--where in-process,worker] [--waits 1] [--batch-size 8]
[--expressions 3000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.types import Prediction, Query

sys.path.insert(0, str(Path(__file__).resolve().parent))

GOALS = {5.0: 0.03, 2.0: 0.08}  # ms per sample -> the largest idle share of the loop (batch 8)
FIRST_CALL_GOAL = 2.0  # seconds from the command's start to the first model call


class Sleeper(Adapter):
    """Sleeps ``ms`` per sample, then answers a centred box mask per sample; traces each call to ``trace``."""

    info = AdapterInfo(name="bench-sleeper", description="sleeps a fixed time per sample (a stand-in for a GPU model)")
    multi_image = True

    def __init__(self, ms: float = 0.0, trace: str = "", waits: int = 1) -> None:
        super().__init__()
        self.options = {"ms": float(ms), "trace": str(trace), "waits": int(waits)}
        self._fd: int | None = None
        self._masks: dict[tuple[int, int], Any] = {}

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        return self.predict_many([(image, queries)])[0]

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        start = time.perf_counter()
        n = sum(len(q) for _, q in items)
        if self.options["ms"]:
            for _ in range(self.options["waits"]):  # a GPU model waits on its device several times a call (a token each)
                time.sleep(self.options["ms"] * n / 1000 / self.options["waits"])
        out = [[Prediction(mask=self._mask(*image.shape[:2])) for _ in queries] for image, queries in items]
        end = time.perf_counter()
        if self.options["trace"]:  # one small unbuffered append per call: a few microseconds, in the gap
            if self._fd is None:
                self._fd = os.open(self.options["trace"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(self._fd, f"{start:.7f} {end:.7f} {n}\n".encode())
        return out

    def _mask(self, h: int, w: int) -> Any:
        if (h, w) not in self._masks:  # the model's answer, computed once per size: the sleep is its cost
            self._masks[(h, w)] = masks.box_mask((w / 4, h / 4, 3 * w / 4, 3 * h / 4), h, w)
        return self._masks[(h, w)]


def plugin_site(folder: Path) -> Path:
    """A dist-info registering ``bench-sleeper`` (this module), for the command and its worker."""
    info = folder / "harness_bench_overlap-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-bench-overlap\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[harness.adapters]\nbench-sleeper = bench_overlap:Sleeper\n")
    return folder


def run_once(work: Path, suite: Path, data: Path, name: str, ms: float, worker: bool, batch_size: int,
             env: dict[str, str], limit: int | None = None, waits: int = 1) -> dict[str, float]:
    """One ``harness run`` command; the figures of its trace."""
    trace = work / f"{name}.trace"
    trace.unlink(missing_ok=True)
    shutil.rmtree(work / name, ignore_errors=True)  # a fresh run, never a resume of an earlier one
    model: dict[str, Any] = {"adapter": "bench-sleeper", "options": {"ms": ms, "trace": str(trace), "waits": waits}}
    if worker:
        model["python"] = sys.executable
    config = work / f"{name}.json"
    config.write_text(json.dumps({"suite": str(suite), "splits": ["val"], "models": {"sleeper": model}}))
    args = [sys.executable, "-m", "harness", "run", "--config", str(config), "--data-root", str(data), "--out", str(work / name),
            "--batch-size", str(batch_size), "--no-report", *(["--limit", str(limit)] if limit else [])]
    t0 = time.perf_counter()
    res = subprocess.run(args, env=env, capture_output=True, text=True, cwd=work)  # cwd: never a checkout's harness by accident
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stderr[-3000:]}")
    calls = [tuple(float(v) for v in line.split()) for line in trace.read_text().splitlines()]
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(calls)]
    span = calls[-1][1] - calls[0][0]
    busy = sum(c[1] - c[0] for c in calls)
    return {"calls": len(calls), "samples": sum(c[2] for c in calls), "busy": busy, "span": span,
            "stretch": busy / (ms * sum(c[2] for c in calls) / 1000) if ms else 1.0,
            "idle": sum(gaps), "idle_share": sum(gaps) / span if span else 0.0, "mean_gap": statistics.mean(gaps) if gaps else 0.0,
            "first_call": calls[0][0] - t0}


def log_without_timings(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rec["prediction"]["seconds"] = None
        lines.append(json.dumps(rec, sort_keys=True))
    return lines


def main(argv: list[str] | None = None) -> int:
    from bench_engine import REFS_PER_IMAGE, SENTENCES_PER_REF, make_dataset, write_images

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ms", default="0,2,5", help="model time per sample in ms, comma-separated (default 0,2,5)")
    parser.add_argument("--where", default="in-process,worker", help="in-process, worker or both (default)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--expressions", type=int, default=3000, help="size of the generated dataset (default 3000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; the median is printed (default 3)")
    parser.add_argument("--waits", type=int, default=1,
                        help="device waits per call: the sleep cut in this many pieces, each giving up the GIL and taking it back "
                             "(a model that synchronises once per generated token; default 1)")
    parser.add_argument("--workdir", type=Path, help="keep the generated data here and reuse it (default: a temporary folder)")
    args = parser.parse_args(argv)
    settings = [(float(ms), where) for ms in args.ms.split(",") for where in args.where.split(",")]
    for _, where in settings:
        if where not in ("in-process", "worker"):
            parser.error(f"--where: unknown {where!r}")

    with tempfile.TemporaryDirectory() as tmp_name:
        work = args.workdir or Path(tmp_name)
        work.mkdir(parents=True, exist_ok=True)
        write_images(work / "images", int(args.expressions / (SENTENCES_PER_REF * REFS_PER_IMAGE)) + 10)
        data = work / f"data{args.expressions}"
        suite = data / "bench.yaml" if data.exists() else make_dataset(data, args.expressions, work / "images")
        site = plugin_site(work / "site")
        here = str(Path(__file__).resolve().parent)
        env = {**os.environ, "HARNESS_CACHE": str(work / "cache"), "TQDM_DISABLE": "1",
               "PYTHONPATH": os.pathsep.join([str(site), here, *filter(None, [os.environ.get("PYTHONPATH")])])}
        run_once(work, suite, data, "warm", 0.0, False, args.batch_size, env, limit=10)  # index cache and page cache warm
        load_before = os.getloadavg()
        runs: dict[tuple[float, str], list[dict[str, float]]] = {s: [] for s in settings}
        logs: dict[tuple[float, str], list[str]] = {}
        for r in range(args.repeats):  # interleaved, so a burst of load elsewhere hits every setting alike
            for ms, where in settings:
                name = f"ms{ms:g}-{where}-{r}"
                runs[(ms, where)].append(run_once(work, suite, data, name, ms, where == "worker", args.batch_size, env,
                                                  waits=args.waits))
                logs[(ms, where)] = log_without_timings(work / name / "sleeper" / "val.jsonl")
        load_after = os.getloadavg()
        first = next(iter(logs.values()))
        same = all(v == first for v in logs.values())

    med = {s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in runs.items()}
    some = next(iter(med.values()))
    print(f"{some['samples']:.0f} samples, batch size {args.batch_size}, {some['calls']:.0f} model calls, {args.waits} device "
          f"wait{'s' if args.waits > 1 else ''} per call; median of {args.repeats} "
          f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, {os.cpu_count()} CPUs)")
    header = ("ms/sample", "where", "busy s", "busy/sleep", "span s", "idle share", "mean gap ms", "first call s", "goal")
    rows = []
    for (ms, where), m in med.items():
        goal = GOALS.get(ms) if args.batch_size == 8 else None  # the goals are stated for batches of 8
        verdict = []
        if goal is not None:
            verdict.append(f"idle <= {goal:.0%}: {'met' if m['idle_share'] <= goal else 'NOT met'}")
        verdict.append(f"first call < {FIRST_CALL_GOAL:g} s: {'met' if m['first_call'] < FIRST_CALL_GOAL else 'NOT met'}")
        stretch = f"{m['stretch']:.3f}" if ms else ""
        rows.append((f"{ms:g}", where, f"{m['busy']:.2f}", stretch, f"{m['span']:.2f}", f"{m['idle_share']:.1%}",
                     f"{1e3 * m['mean_gap']:.2f}", f"{m['first_call']:.2f}", "; ".join(verdict)))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"logs identical but for timings across every run: {'yes' if same else 'NO'}")
    print(json.dumps({f"{ms:g}ms {where}": {k: round(v, 4) for k, v in m.items()} for (ms, where), m in med.items()}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
