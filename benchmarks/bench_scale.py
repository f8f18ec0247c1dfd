"""Does the engine stay linear from 1k to 200k samples? Printed figures, not timed tests.

For each size, on a generated REFER-format dataset in RefCOCO's proportions (640x480 JPEGs,
2.54 objects per image, 2.84 sentences per object; the same generator as bench_engine.py),
from a warm index cache, each command in a fresh interpreter:

- ``harness run --models empty --no-report``: wall and CPU (user + system) ms/sample, start-up
  included (CPU time is the steadier figure on a shared machine), peak RSS,
  and minor page faults per image (getrusage of the child: less noisy than times on a shared
  machine, and what grew when image decoding churned the allocator);
- ``harness report`` on that run (results.json and the HTML report);
- ``harness gate`` of the run against itself (paired bootstrap, 1000 rounds), with ``--verify none``
  (the verifying reader alone: invariants of every line, every number of results.json derived again,
  each log's sha256), with the default ``--verify 256`` (256 stored lines per model x split scored
  again from their masks, on both sides, which loads the samples) and ``--verify all``;
- ``harness report`` with ``--verify none`` beside the default;
- resuming the finished run with nothing changed (``harness run`` again, same command).

Images: ``--unique-images`` distinct JPEGs are written once, the rest of the names are hard
links to them, so 200k samples (27.6k image names) need no 3 GB of files. Every image is still
opened and decoded by the engine; only the disk cache is shared.

Goal (issue 15): ms/sample at 200k within 1.2x of 10k, faults per image flat.

Run: ``python benchmarks/bench_scale.py [--sizes 1000,10000] [--workdir DIR]`` (each dataset is generated in a child
process, so that the commands timed never inherit its peak RSS).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import make_dataset, write_images

DEFAULT_SIZES = "1000,10000,50000,100000,200000"


def link_images(folder: Path, pool: Path, names: list[str]) -> None:
    """Every image name of the dataset, as a hard link to one of the pool's distinct JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    distinct = sorted(pool.glob("*.jpg"))
    for i, name in enumerate(names):
        target = folder / name
        if not target.exists():
            os.link(distinct[i % len(distinct)], target)


def dataset_images(root: Path) -> tuple[list[str], int]:
    """(every image file name of the dataset, how many distinct images its refs use)."""
    d = root / "refer_seg" / "refcoco"
    images = json.loads((d / "instances.json").read_text())["images"]
    refs = pickle.loads((d / "refs(unc).p").read_bytes())
    return [im["file_name"] for im in images], len({r["image_id"] for r in refs})


def prepare(size: int, tmp: Path) -> tuple[list[str], int]:
    """Generate the dataset of ``size`` samples if it is not there yet: its image names and distinct images."""
    root = tmp / f"data{size}"
    if not (root / "bench.yaml").exists():
        shutil.rmtree(root, ignore_errors=True)
        make_dataset(root, size, tmp / f"images{size}")
    return dataset_images(root)


def prepared(size: int, tmp: Path) -> tuple[list[str], int]:
    """``prepare`` in a child process: a child started by fork and exec inherits this process's peak RSS
    as its own ru_maxrss on Linux, so this process must never hold a 200k dataset's annotations."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(prepare, size, tmp).result()


def timed(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``harness ARGS`` in a fresh interpreter: wall seconds, peak RSS (MB), minor faults."""
    with tempfile.TemporaryFile() as log:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not every child's sum
        seconds = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 1):  # gate exits 1 on a drop, which a run gated against itself never has
            log.seek(0)
            raise SystemExit(f"harness {' '.join(args)} failed ({proc.returncode}):\n{log.read().decode()[-3000:]}")
    return {"seconds": seconds, "rss_mb": usage.ru_maxrss / 1024, "minflt": usage.ru_minflt, "sys_s": usage.ru_stime,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma-separated sample counts (default {DEFAULT_SIZES})")
    parser.add_argument("--unique-images", type=int, default=1000, help="distinct JPEGs written (default 1000)")
    parser.add_argument("--workdir", type=Path, help="keep generated data here and reuse it (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",")]

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = args.workdir or Path(tmp_name)
        pool = tmp / "pool"
        t = time.perf_counter()
        write_images(pool, args.unique_images)
        print(f"{args.unique_images} distinct 640x480 JPEGs ready in {time.perf_counter() - t:.1f} s", flush=True)
        env = {**os.environ, "HARNESS_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
        rows = []
        for size in sizes:
            root = tmp / f"data{size}"
            names, n_images = prepared(size, tmp)
            link_images(tmp / f"images{size}", pool, names)
            suite = root / "bench.yaml"
            out = tmp / f"run{size}"
            shutil.rmtree(out, ignore_errors=True)
            common = ["run", "--models", "empty", "--suite", str(suite), "--data-root", str(root)]
            timed([*common, "--no-report", "--out", str(tmp / f"warm{size}"), "--limit", "10"], env)  # index into the cache
            shutil.rmtree(tmp / f"warm{size}")
            run = timed([*common, "--no-report", "--out", str(out)], env)
            n = sum(1 for _ in (out / "empty" / "val.jsonl").open())
            report_none = timed(["report", str(out), "--data-root", str(root), "--verify", "none"], env)
            report = timed(["report", str(out), "--data-root", str(root)], env)
            gate_none = timed(["gate", str(out), "--baseline", str(out), "--verify", "none"], env)
            gate = timed(["gate", str(out), "--baseline", str(out)], env)
            gate_all = timed(["gate", str(out), "--baseline", str(out), "--verify", "all"], env)
            resume = timed([*common, "--out", str(out)], env)  # finished, nothing changed
            row = {"samples": n, "images": n_images, "run_s": run["seconds"], "ms_per_sample": 1e3 * run["seconds"] / n,
                   "cpu_ms_per_sample": 1e3 * run["cpu_s"] / n,
                   "rss_mb": run["rss_mb"], "faults_per_image": run["minflt"] / n_images, "sys_s": run["sys_s"],
                   "report_s": report["seconds"], "report_rss_mb": report["rss_mb"],
                   "gate_s": gate["seconds"], "gate_rss_mb": gate["rss_mb"], "resume_s": resume["seconds"],
                   "report_none_s": report_none["seconds"], "gate_none_s": gate_none["seconds"], "gate_all_s": gate_all["seconds"]}
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    print()
    print("| samples | images | run ms/sample (wall) | run CPU ms/sample | run peak RSS | minor faults/image | run system time "
          "| report | gate | resume (finished) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['samples']:,} | {r['images']:,} | {r['ms_per_sample']:.3f} | {r['cpu_ms_per_sample']:.3f} | {r['rss_mb']:.0f} MB | "
              f"{r['faults_per_image']:.0f} | "
              f"{r['sys_s']:.1f} s | {r['report_s']:.1f} s, {r['report_rss_mb']:.0f} MB | {r['gate_s']:.1f} s, {r['gate_rss_mb']:.0f} MB | "
              f"{r['resume_s']:.2f} s |")
    print()
    print("| samples | report --verify none | report (--verify 256) | gate --verify none | gate (--verify 256) | gate --verify all |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['samples']:,} | {r['report_none_s']:.1f} s | {r['report_s']:.1f} s | {r['gate_none_s']:.1f} s | {r['gate_s']:.1f} s "
              f"| {r['gate_all_s']:.1f} s |")
    by_size = {r["samples"]: r for r in rows}
    small = min((r for r in rows if r["samples"] >= 10000), key=lambda r: r["samples"], default=None)
    big = max(rows, key=lambda r: r["samples"])
    if small is not None and big is not small:
        print(f"\nat {big['samples']:,} over {small['samples']:,}: wall ms/sample {big['ms_per_sample'] / small['ms_per_sample']:.2f}x, "
              f"CPU ms/sample {big['cpu_ms_per_sample'] / small['cpu_ms_per_sample']:.2f}x (goal <= 1.2x); "
              f"faults/image {small['faults_per_image']:.0f} -> {big['faults_per_image']:.0f}")
    if args.json:
        args.json.write_text(json.dumps(list(by_size.values()), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
