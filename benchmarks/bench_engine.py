"""How much does the engine cost? Printed figures, not timed tests.

On a generated REFER-format dataset (``refs(unc).p`` + ``instances.json`` + 640x480 JPEGs,
RefCOCO's shape: 2.54 objects per image, 2.84 sentences per object) this measures:

1. the engine's time per sample with a zero-cost adapter (``empty``), from a warm index cache
   to results.json, against the true floor of its work: decode each JPEG once to an RGB array
   and compute each sample's intersection and union on RLE with pycocotools (areas of the
   prediction and the ground truth, area of their intersection), no dense ground-truth decode,
   which the engine never does (target: at most 1.15x). It is also set against the older,
   slower loop that decoded every ground-truth mask densely, the figure the README used to
   quote. Times are process CPU seconds (user + system, best of several runs), which a busy
   shared machine disturbs less than wall time; wall time is printed too;
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
    once to an RGB array, and per sample |P|, |G| and |P ∧ G| on the runs with pycocotools
    (the prediction is the empty mask the ``empty`` adapter returns)."""
    from pycocotools import mask as mask_utils

    from harness.run.predict import image_groups

    coco = [({"size": s.gt.mask["size"], "counts": s.gt.mask["counts"].encode()}) for s in samples]
    by_id = {id(s): c for s, c in zip(samples, coco)}
    empties: dict[tuple[int, int], dict] = {}
    start = _clock()
    for image, group in image_groups(samples):
        with Image.open(image) as im:
            im.load()
            pixels = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
        h, w = pixels.shape[:2]
        pred = empties.get((h, w))
        if pred is None:
            pred = empties[(h, w)] = mask_utils.encode(np.zeros((h, w), np.uint8, order="F"))
        for sample in group:
            gt = by_id[id(sample)]
            inter = mask_utils.area(mask_utils.merge([pred, gt], intersect=True))
            _union = mask_utils.area(pred) + mask_utils.area(gt) - inter
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


def engine_in_process(suite: Path, root: Path, out: Path, cache: Path) -> tuple[float, float]:
    """(CPU s, wall s) of ``harness run --models empty`` in this process, from a warm index cache
    to results.json (no report)."""
    import os

    from harness.run.config import build_config
    from harness.run.runner import run

    os.environ["HARNESS_CACHE"] = str(cache)
    config = build_config(models="empty", suite=str(suite), data_root=root, out=out)
    start = _clock()
    run(config, render=False)
    return _since(start)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expressions", type=int, default=5000, help="size of the speed dataset (default 5000)")
    parser.add_argument("--sizes", default="1000,5000,10000,20000", help="dataset sizes for the memory curve")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timed loop; the best counts (default 3)")
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
        engine_runs, floor_runs, dense_runs = [], [], []
        for i in range(args.repeat):  # interleaved, so a burst of load elsewhere hits all three alike
            floor_runs.append(true_floor(samples))
            engine_runs.append(engine_in_process(suite, speed, tmp / f"engine-inproc{i}", tmp / "cache"))
            dense_runs.append(dense_loop(samples))
        engine, floor, dense = min(engine_runs), min(floor_runs), min(dense_runs)
        startup = min(harness_cli([*common, "--out", str(tmp / f"engine{i}")], env)[0] for i in range(2))
        ratio = engine[0] / floor[0]
        rows.append(("engine, zero-cost adapter", f"{1e3 * engine[0] / n:.3f} ms/sample CPU, {1e3 * engine[1] / n:.3f} wall "
                     f"({n} samples: index, predict, score, log, results)",
                     f"{ratio:.2f}x the true floor in CPU time, {engine[1] / floor[1]:.2f}x in wall time (target <= 1.15x)"))
        rows.append(("  the same as a command", f"{startup:.2f} s wall (interpreter start-up and imports included)", ""))
        rows.append(("true floor (decode JPEG once + RLE i/u)",
                     f"{1e3 * floor[0] / n:.3f} ms/sample CPU, {1e3 * floor[1] / n:.3f} wall", ""))
        rows.append(("dense loop (decode image + every GT mask)", f"{1e3 * dense[0] / n:.3f} ms/sample CPU, {1e3 * dense[1] / n:.3f} wall",
                     f"engine {engine[0] / dense[0]:.2f}x this loop"))

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
    print(json.dumps({"engine_over_true_floor": round(ratio, 3), "engine_over_true_floor_wall": round(engine[1] / floor[1], 3),
                      "engine_over_dense_loop": round(engine[0] / dense[0], 3),
                      "scoring_per_s": round(rate), "rss_growth_mb": round(growth, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
