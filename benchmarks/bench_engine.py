"""How much does the engine cost? Printed figures, not timed tests.

On a generated REFER-format dataset (``refs(unc).p`` + ``instances.json`` + 640x480 JPEGs,
RefCOCO's shape: 2.54 objects per image, 2.84 sentences per object) this measures:

1. the engine's time per sample with a zero-cost adapter (``empty``), from a warm index cache
   to results.json (samples from the cache, predict, score, log, results with their bootstrap
   intervals), against the true floor of its work: decode each JPEG once to an RGB array and
   compute each sample's intersection and union on RLE with pycocotools, from ground truth
   already in memory as pycocotools wants it (areas of the predictions and of the ground truths,
   an image's in one call each; the area of an intersection only where the prediction is not
   empty, as the engine's scoring does); no dense ground-truth decode, which the engine never
   does (a ratio reported without a target: with a zero-cost model it is dominated by the
   bootstrap intervals of results.json, which stay; what a GPU run costs is the model's idle
   time between calls, ``bench_overlap.py``). The engine's prediction stage (predict, score, log) is also
   shown alone, and the results it writes after it, and its own work per sample (the prediction
   stage with the decode replaced by a constant image). It is also set against the older, slower
   loop that decoded every ground-truth mask densely, the figure the README used to quote.
   Times are process CPU seconds (user + system, all threads: the engine decodes in a helper
   thread), the median of several interleaved runs, which a busy shared machine disturbs less
   than wall time; wall time is printed too;
2. scoring throughput from RLE for 640x480 masks on one core (target: >= 20,000 samples/s);
3. peak memory of ``harness run`` as the dataset grows from 1k to 20k expressions (target:
   growth under 50 MB);
4. report rendering time for a run of 20k samples.

Run: ``python benchmarks/bench_engine.py [--expressions 5000]``
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_refer_index import write_dataset

SENTENCES_PER_REF = 2.84
REFS_PER_IMAGE = 2.54

SUITE = """\
name: bench
version: 1
source:
  format: refer
  refer_root: refer_seg
  image_dir: images
  splits: {{val: {{dataset: refcoco, split_by: unc, split: val}}}}
splits: {{val: {{}}}}
"""

CHILD = """
import resource, sys
from harness.cli import main
code = main(sys.argv[1:])
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def write_images(folder: Path, count: int) -> None:
    """Smooth 640x480 JPEGs (photo-like size on disk), named as COCO train2014 files."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(1, count + 1):
        path = folder / f"COCO_train2014_{i:012d}.jpg"
        if path.exists():
            continue
        rng = np.random.default_rng(i)
        base = np.stack([(xx * rng.uniform(0.1, 0.4) + yy * rng.uniform(0.1, 0.4) + rng.uniform(0, 255)) % 256
                         for _ in range(3)], axis=-1)
        noise = rng.normal(0, 12, (480, 640, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        path.write_bytes(buf.getvalue())


def make_dataset(root: Path, expressions: int, images: Path) -> Path:
    """A refer tree of about ``expressions`` sentences whose images live in ``images``."""
    refs = max(1, round(expressions / SENTENCES_PER_REF))
    write_dataset(root, refs, SENTENCES_PER_REF)
    (root / "images").symlink_to(images)
    (root / "bench.yaml").write_text(SUITE.format())
    return root / "bench.yaml"


def harness_cli(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run the CLI in a fresh interpreter; return (seconds, peak RSS in KB)."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    rss = int(next(line.split()[1] for line in res.stdout.splitlines() if line.startswith("maxrss_kb")))
    return time.perf_counter() - t, rss


def _samples(suite: Path, root: Path, cache: Path) -> list:
    from harness.data.sources.refer import ReferSource
    from harness.data.suites import load_suite

    s = load_suite(str(suite))
    return ReferSource(s.source_params, s.conventions, root, cache).samples("val")


def _clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    cpu, wall = _clock()
    return cpu - start[0], wall - start[1]


def true_floor(samples: list) -> tuple[float, float]:
    """(CPU s, wall s) of the work any evaluator of a zero-cost model must do: decode each JPEG
    once to an RGB array, and per sample |P|, |G| and |P ∧ G| on the runs with pycocotools, from
    ground truth already in pycocotools' form (the prediction is the empty mask the ``empty``
    adapter returns, one per sample as a model's would be). Nothing here can be left out: the
    areas of an image's predictions and ground truths take one call each, and |P ∧ G| is
    computed only where |P| > 0 (for an empty prediction it is 0)."""
    from pycocotools import mask as mask_utils

    from harness.run.predict import image_groups

    coco = [({"size": s.gt.mask["size"], "counts": s.gt.mask["counts"].encode()}) for s in samples]
    by_id = {id(s): c for s, c in zip(samples, coco)}
    groups = [(image, [by_id[id(s)] for s in group]) for image, group in image_groups(samples)]
    empties: dict[tuple[int, int], bytes] = {}
    start = _clock()
    for image, gts in groups:
        with Image.open(image) as im:
            im.load()
            pixels = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
        h, w = pixels.shape[:2]
        counts = empties.get((h, w))
        if counts is None:
            counts = empties[(h, w)] = mask_utils.encode(np.zeros((h, w), np.uint8, order="F"))["counts"]
        preds = [{"size": [h, w], "counts": counts} for _ in gts]  # what a model hands back: a mask per sample
        p_area, g_area = mask_utils.area(preds), mask_utils.area(gts)  # an image has well under 255 samples
        inter = [int(mask_utils.area(mask_utils.merge([p, g], intersect=True))) if a else 0 for p, g, a in zip(preds, gts, p_area)]
        _union = [int(a) + int(b) - i for a, b, i in zip(p_area, g_area, inter)]
    return _since(start)


def dense_loop(samples: list) -> tuple[float, float]:
    """(CPU s, wall s) of the older comparison: decode each image once and each sample's
    ground-truth mask densely (work the engine does not do)."""
    from harness import masks
    from harness.data.images import load_image
    from harness.run.predict import image_groups

    start = _clock()
    for image, group in image_groups(samples):
        load_image(image)
        for sample in group:
            masks.decode(sample.gt.mask)
    return _since(start)


def engine_in_process(suite: Path, root: Path, out: Path, cache: Path) -> tuple[tuple[float, float], dict[str, tuple[float, float]]]:
    """(CPU s, wall s) of ``harness run --models empty`` in this process, from a warm index cache
    to results.json (no report), and the same of its stages: ``predict`` (predict, score, log:
    ``run_model_split``) and ``results`` (merge and results.json: ``merge_run``)."""
    import os

    from harness.run import merge, runner
    from harness.run.config import build_config

    stages: dict[str, tuple[float, float]] = {}

    def timed(name: str, fn: object) -> object:
        def call(*args: object, **kwargs: object) -> object:
            begin = _clock()
            try:
                return fn(*args, **kwargs)  # type: ignore[operator]
            finally:
                cpu, wall = _since(begin)
                old = stages.get(name, (0.0, 0.0))
                stages[name] = (old[0] + cpu, old[1] + wall)
        return call

    os.environ["HARNESS_CACHE"] = str(cache)
    config = build_config(models="empty", suite=str(suite), data_root=root, out=out)
    # The runner imports merge_run where it calls it (a finished resume never loads it): timed in its module.
    saved = runner.run_model_split, merge.merge_run
    runner.run_model_split, merge.merge_run = timed("predict", saved[0]), timed("results", saved[1])  # type: ignore[assignment]
    try:
        start = _clock()
        runner.run(config, render=False)
        return _since(start), stages
    finally:
        runner.run_model_split, merge.merge_run = saved


def engine_bookkeeping(suite: Path, samples: list, out: Path, repeat: int) -> float:
    """CPU s per sample of the prediction stage (``run_model_split``: predict, score, log) with the
    decode replaced by one constant 640x480 array: the engine's own Python work per sample, which
    a busy machine barely disturbs (one thread, no I/O wait), for comparing one version with another."""
    import os

    from harness.data.suites import load_suite
    from harness.records.store import PredictionLog
    from harness.registry import create_adapter
    from harness.run import predict
    from harness.run.runner import run_model_split

    conv = load_suite(str(suite)).conventions
    adapter = create_adapter("empty")
    pixels = np.zeros((480, 640, 3), np.uint8)
    saved = predict._decoder
    predict._decoder = lambda adapter, exif: (lambda path: pixels)  # type: ignore[assignment]
    os.environ["TQDM_DISABLE"] = "1"
    times = []
    try:
        for _ in range(repeat):
            shutil.rmtree(out / "bookkeeping", ignore_errors=True)
            log = PredictionLog(out / "bookkeeping" / "val.jsonl")
            start = time.process_time()
            run_model_split(adapter, "empty", "val", samples, log, set(), conv, 8)
            times.append(time.process_time() - start)
    finally:
        predict._decoder = saved
        os.environ.pop("TQDM_DISABLE", None)
    return statistics.median(times) / len(samples)


def scoring_throughput(suite: Path, root: Path, cache: Path, limit: int = 5000) -> float:
    """Samples/s of score_sample on real-shaped 640x480 RLE (prediction = the GT shifted)."""
    from harness import masks
    from harness.data.sources.refer import ReferSource
    from harness.data.suites import load_suite
    from harness.score.scoring import score_sample
    from harness.types import Prediction

    s = load_suite(str(suite))
    samples = ReferSource(s.source_params, s.conventions, root, cache).samples("val")[:limit]
    preds = [Prediction(mask=masks.encode(np.roll(masks.decode(x.gt.mask), 7, axis=1)), box=x.gt.box) for x in samples]
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for x, p in zip(samples, preds):
            score_sample(p, x.gt, s.conventions)
        best = max(best, len(samples) / (time.perf_counter() - t))
    return best


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """CPU and wall medians, each on its own (the runs are interleaved with the other loops)."""
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expressions", type=int, default=5000, help="size of the speed dataset (default 5000)")
    parser.add_argument("--sizes", default="1000,5000,10000,20000", help="dataset sizes for the memory curve")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs of each timed loop; the median counts (default 5)")
    parser.add_argument("--workdir", type=Path, help="keep the generated data here and reuse it (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",")]
    import os

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = args.workdir or Path(tmp_name)
        for old in [*tmp.glob("speed"), *tmp.glob("mem*"), *tmp.glob("engine*"), *tmp.glob("warmup")]:
            shutil.rmtree(old)
        images = tmp / "images"
        n_images = int(max([args.expressions, *sizes]) / (SENTENCES_PER_REF * REFS_PER_IMAGE)) + 10
        t = time.perf_counter()
        write_images(images, n_images)
        print(f"wrote {n_images} JPEGs of 640x480 in {time.perf_counter() - t:.1f} s")
        env = {**os.environ, "HARNESS_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
        rows: list[tuple[str, str, str]] = []

        # 1. engine vs the true floor (and the older dense loop)
        speed = tmp / "speed"
        suite = make_dataset(speed, args.expressions, images)
        common = ["run", "--models", "empty", "--suite", str(suite), "--data-root", str(speed), "--no-report"]
        harness_cli([*common, "--out", str(tmp / "warmup"), "--limit", "10"], env)  # parse and cache the index
        samples = _samples(suite, speed, tmp / "cache")
        n = len(samples)
        engine_runs, stage_runs, floor_runs, dense_runs = [], [], [], []
        for i in range(args.repeat):  # interleaved, so a burst of load elsewhere hits all three alike
            floor_runs.append(true_floor(samples))
            total, stages = engine_in_process(suite, speed, tmp / f"engine-inproc{i}", tmp / "cache")
            engine_runs.append(total)
            stage_runs.append(stages)
            dense_runs.append(dense_loop(samples))
        engine, floor, dense = _median(engine_runs), _median(floor_runs), _median(dense_runs)
        bookkeeping = engine_bookkeeping(suite, samples, tmp, args.repeat)
        predict, results = _median([s["predict"] for s in stage_runs]), _median([s["results"] for s in stage_runs])
        startup = min(harness_cli([*common, "--out", str(tmp / f"engine{i}")], env)[0] for i in range(2))
        ratio, ratio_wall = engine[0] / floor[0], engine[1] / floor[1]

        def per_sample(t: tuple[float, float]) -> str:
            return f"{1e3 * t[0] / n:.3f} ms/sample CPU, {1e3 * t[1] / n:.3f} wall"

        rows.append(("engine, zero-cost adapter", f"{per_sample(engine)} ({n} samples: index, predict, score, log, results)", ""))
        rows.append(("  its prediction stage", f"{per_sample(predict)} (predict, score, log)",
                     f"{predict[0] / floor[0]:.2f}x the floor CPU, {predict[1] / floor[1]:.2f}x wall"))
        rows.append(("  its results", f"{per_sample(results)} (merge, metrics, bootstrap intervals, slices)", ""))
        rows.append(("  its own work per sample", f"{1e6 * bookkeeping:.1f} us CPU (the prediction stage without the decode)", ""))
        rows.append(("  the same as a command", f"{startup:.2f} s wall (interpreter start-up and imports included)", ""))
        rows.append(("true floor (decode JPEG once + RLE i/u)", per_sample(floor), ""))
        rows.append(("engine / true floor", f"{ratio:.2f}x CPU, {ratio_wall:.2f}x wall",
                     f"(median of {args.repeat}; load average {os.getloadavg()[0]:.1f} at the end)"))
        rows.append(("dense loop (decode image + every GT mask)", per_sample(dense), f"engine {engine[0] / dense[0]:.2f}x this loop"))

        # 2. scoring throughput
        rate = scoring_throughput(suite, speed, tmp / "cache")
        rows.append(("scoring from RLE, 640x480", f"{rate:,.0f} samples/s (one core)", "target >= 20,000"))

        # 3. memory growth
        rss = {}
        for size in sizes:
            d = tmp / f"mem{size}"
            s = make_dataset(d, size, images)
            _, rss[size] = harness_cli(["run", "--models", "empty", "--suite", str(s), "--data-root", str(d),
                                        "--no-report", "--out", str(tmp / f"memrun{size}")], env)
        growth = (rss[sizes[-1]] - rss[sizes[0]]) / 1024
        curve = ", ".join(f"{k // 1000}k: {v / 1024:.0f} MB" for k, v in rss.items())
        rows.append(("peak RSS of harness run", curve, f"growth {growth:.0f} MB (target < 50 MB)"))

        # 4. report rendering for the largest run
        big = tmp / f"memrun{sizes[-1]}"
        n_big = sum(1 for _ in (big / "empty" / "val.jsonl").open())
        seconds, _ = harness_cli(["report", str(big), "--data-root", str(tmp / f"mem{sizes[-1]}")], env)
        rows.append((f"harness report ({n_big} samples)", f"{seconds:.1f} s incl. start-up and results.json", ""))

    width = max(len(r[0]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{width}}  {value}  {note}")
    print(f"\nengine / true floor: {ratio:.2f}x CPU time, {ratio_wall:.2f}x wall time")
    print(json.dumps({"engine_over_true_floor": round(ratio, 3), "engine_over_true_floor_wall": round(ratio_wall, 3),
                      "prediction_stage_over_true_floor": round(predict[0] / floor[0], 3), "bookkeeping_us": round(1e6 * bookkeeping, 1),
                      "engine_over_dense_loop": round(engine[0] / dense[0], 3),
                      "scoring_per_s": round(rate), "rss_growth_mb": round(growth, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
