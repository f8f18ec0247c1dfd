"""What pipelining the worker buys: ``harness run`` with the zero-cost ``empty`` adapter in a worker.

On the generated REFER-format dataset of ``bench_engine.py`` (640x480 JPEGs, RefCOCO's shape)
this times the prediction stage (``run_model_split``: decode, pipe, model, score, log; not the
worker's start-up nor results) of ``--models empty`` served by ``python -m harness.run.worker`` in a second interpreter, with
the protocol pipelined (``RemoteAdapter.pipeline_window`` requests in flight, the worker's reader
decoding the next images while the model runs) and without (one request at a time, as before). Printed figures, not a
timed test; the logs of both runs are checked to be identical but for timings.

Run: ``python benchmarks/bench_pipeline.py [--expressions 3000] [--batch-size 8] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import REFS_PER_IMAGE, make_dataset, write_images


def timed_run(suite: Path, root: Path, out: Path, batch_size: int, window: int) -> tuple[float, float, list[str]]:
    """(wall seconds, predict seconds, log lines without timings) of one worker run at ``window``."""
    from harness.run import runner
    from harness.run.config import build_config
    from harness.run.remote import RemoteAdapter

    RemoteAdapter.pipeline_window = window
    spent: list[float] = []
    real = runner.run_model_split

    def timed(*args: Any, **kwargs: Any) -> Any:
        progress = real(*args, **kwargs)
        spent.append(progress.seconds)
        return progress

    runner.run_model_split = timed
    config = out.parent / f"{out.name}.json"
    config.write_text(json.dumps({"suite": str(suite), "splits": ["val"], "models": {"empty": {"python": sys.executable}}}))
    t = time.perf_counter()
    try:
        runner.run(build_config(config_file=config, data_root=root, out=out, batch_size=batch_size), render=False)
    finally:
        runner.run_model_split = real
    wall = time.perf_counter() - t
    (predict,) = spent
    lines = []
    for line in (out / "empty" / "val.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec["prediction"]["seconds"] = None
        lines.append(json.dumps(rec, sort_keys=True))
    return wall, predict, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expressions", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="runs per setting; the median is printed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["HARNESS_CACHE"] = str(work / "cache")
        write_images(work / "images", int(args.expressions / 2.84 / REFS_PER_IMAGE) + 10)
        suite = make_dataset(work / "data", args.expressions, work / "images")
        from harness.run.remote import RemoteAdapter

        window = RemoteAdapter.pipeline_window
        timed_run(suite, work / "data", work / "warm", args.batch_size, window)  # index cache and page cache warm
        figures: dict[int, list[tuple[float, float]]] = {1: [], window: []}
        logs: dict[int, list[str]] = {}
        for r in range(args.repeats):
            for w in (1, window):
                wall, predict, lines = timed_run(suite, work / "data", work / f"w{w}-{r}", args.batch_size, w)
                figures[w].append((wall, predict))
                logs[w] = lines
        n = len(logs[1])
        assert logs[1] == logs[window], "pipelined and sequential logs differ"
        print(f"{n} samples, batch size {args.batch_size}, empty adapter in a worker, median of {args.repeats}")
        for w, label in ((1, "one request at a time"), (window, f"pipelined, {window} in flight")):
            wall = sorted(f[0] for f in figures[w])[len(figures[w]) // 2]
            predict = sorted(f[1] for f in figures[w])[len(figures[w]) // 2]
            print(f"  {label:24s} predict stage {1000 * predict / n:.3f} ms/sample, whole command {1000 * wall / n:.3f} ms/sample")
        print("  logs identical but for timings: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
