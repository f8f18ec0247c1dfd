"""What reading a run's logs costs: ``harness report``, ``harness gate`` and resume at 20k-100k samples.

A generated REFER-format split (RefCOCO's shape, 640x480 JPEGs; a few hundred distinct images,
linked under every file name, since only the logs matter here) is run once with the zero-cost
``empty`` adapter. Then each engine given with ``--engine`` (a folder holding ``harness/``, e.g.
an export of an older commit; default: this checkout) is timed, each command in a fresh
interpreter with its peak RSS:

- ``harness report RUN`` (results.json and the HTML report, gallery images included);
- ``harness gate RUN --baseline RUN`` (per-sample scores of two runs, paired bootstrap);
- resume with results recomputed (``harness run`` again, no ``.finished.json``, ``--no-report``);
- resume of a finished run (``harness run`` again, nothing changed).

The ``empty`` adapter's masks are a few bytes; with ``--object-masks`` every logged mask is then
replaced by one object's RLE on 640x480 (about 2 KB, as a real model's weighs) and the score
index rebuilt, so reading whole records costs what it costs on a real run.

Run: ``python benchmarks/bench_logs.py --samples 20000,100000 [--engine /path/to/old --engine .]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import SENTENCES_PER_REF, SUITE, write_images
from bench_refer_index import write_dataset

DISTINCT_IMAGES = 300

# Peak RSS from /proc (VmHWM): ru_maxrss would report the benchmark's own peak, which a child
# started by vfork and exec inherits on Linux.
CHILD = """
import sys
import harness
from pathlib import Path
print("engine", Path(harness.__file__).parent.parent)
from harness.cli import main
try:
    code = main(sys.argv[1:])
finally:
    print("vmhwm_kb", next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
sys.exit(code)
"""


def make_split(root: Path, samples: int, images: Path) -> Path:
    write_dataset(root, max(1, round(samples / SENTENCES_PER_REF)), SENTENCES_PER_REF)
    names = [im["file_name"] for im in json.loads((root / "refer_seg" / "refcoco" / "instances.json").read_text())["images"]]
    linked = root / "images"
    linked.mkdir()
    distinct = sorted(images.iterdir())
    for k, name in enumerate(names):
        (linked / name).symlink_to(distinct[k % len(distinct)])
    (root / "bench.yaml").write_text(SUITE.format())
    return root / "bench.yaml"


def weigh_masks(out: Path) -> None:
    """Replace every logged mask by a realistic object mask, then rebuild the log's score index."""
    import numpy as np

    from harness import masks
    from harness.records import score_index
    from harness.records.store import RunDir

    yy, xx = np.mgrid[0:480, 0:640]
    blob = ((xx - 300) ** 2 / 150 ** 2 + (yy - 240) ** 2 / 100 ** 2 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 5.0)) < 1
    rle = masks.encode(blob)
    log = out / "empty" / "val.jsonl"
    heavy = log.with_suffix(".tmp")
    with log.open(encoding="utf-8") as fin, heavy.open("w", encoding="utf-8") as fout:
        for line in fin:
            rec = json.loads(line)
            rec["prediction"]["mask"] = rle
            fout.write(json.dumps(rec, separators=(",", ":")) + "\n")
    heavy.replace(log)
    score_index.index_path(log).unlink(missing_ok=True)
    RunDir(out).index(log)


def timed(engine: Path, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one harness command in a fresh interpreter using ``engine``."""
    t = time.perf_counter()
    # cwd is the engine too: ``python -c`` puts the working directory before PYTHONPATH on sys.path
    res = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, cwd=engine,
                         env={**env, "PYTHONPATH": str(engine)})
    seconds = time.perf_counter() - t
    if res.returncode not in (0, 1, 4):  # gate 1 (regression) and run 4 (failed samples) still measure
        raise SystemExit(f"{args}: exit {res.returncode}\n{res.stderr[-2000:]}")
    rss = int(next(line.split()[1] for line in res.stdout.splitlines() if line.startswith("vmhwm_kb")))
    if not res.stdout.startswith(f"engine {engine}"):
        raise SystemExit(f"{args}: ran another engine than {engine}: {res.stdout[:200]}")
    return seconds, rss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", default="20000,100000", help="split sizes (default 20000,100000)")
    parser.add_argument("--engine", type=Path, action="append", help="a folder with harness/ to time (repeatable)")
    parser.add_argument("--workdir", type=Path, help="keep generated data and runs here, and reuse them (default: a temporary folder)")
    parser.add_argument("--object-masks", action="store_true", help="give every logged prediction a ~2 KB object mask")
    parser.add_argument("--fresh", action="store_true", help="generate data and runs again even if the workdir has them")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent.parent
    engines = [e.resolve() for e in (args.engine or [here])]
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = args.workdir or Path(tmp_name)
        env = {**os.environ, "HARNESS_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
        write_images(tmp / "distinct", DISTINCT_IMAGES)
        for n in (int(v) for v in args.samples.split(",")):
            data, out = tmp / f"data{n}", tmp / (f"run{n}" + ("-object-masks" if args.object_masks else ""))
            suite = data / "bench.yaml"
            run = ["run", "--models", "empty", "--suite", str(suite), "--data-root", str(data), "--out", str(out)]
            if not (out / "empty" / "val.jsonl").exists() or args.fresh:  # a --workdir keeps data and run
                shutil.rmtree(out, ignore_errors=True)
                if not (data / "bench.yaml").exists() or args.fresh:
                    shutil.rmtree(data, ignore_errors=True)
                    make_split(data, n, tmp / "distinct")
                seconds, rss = timed(here, [*run, "--no-report"], env)
                print(f"{n} samples: harness run {seconds:.1f} s, {rss:.0f} MB", flush=True)
                if args.object_masks:
                    weigh_masks(out)
                    timed(here, [*run, "--no-report"], env)  # results and .finished.json for the heavier log
            n_lines = sum(1 for _ in (out / "empty" / "val.jsonl").open())
            for engine in engines:
                for name, cmd, prep in (
                    ("report", ["report", str(out), "--data-root", str(data)], None),
                    ("gate", ["gate", str(out), "--baseline", str(out)], None),
                    ("resume, results recomputed", [*run, "--no-report"], out / ".finished.json"),
                    ("resume, finished run", [*run, "--no-report"], None),
                ):
                    if prep is not None:
                        prep.unlink(missing_ok=True)
                    seconds, rss = timed(engine, cmd, env)
                    rows.append((n_lines, str(engine), name, seconds, rss))
                    print(f"  {engine}: {name}: {seconds:.2f} s, {rss:.0f} MB", flush=True)
    print()
    print("| samples | engine | command | seconds | peak RSS MB |")
    print("| ---: | --- | --- | ---: | ---: |")
    for n_lines, engine, name, seconds, rss in rows:
        print(f"| {n_lines} | {engine} | {name} | {seconds:.2f} | {rss:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
