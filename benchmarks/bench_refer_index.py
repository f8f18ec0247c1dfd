"""How fast does a RefCOCO-sized split start? First parse vs. the cached index.

Writes a synthetic REFER-format dataset (``refs(unc).p`` + ``instances.json``, random
polygons, no images: the index does not read them) of about 10k expressions in a temporary
directory, then prints:

- first parse: pickle + instances.json + rasterising every target (empty cache);
- cached enumeration: a new Source (and a new interpreter) reading the split from the cache;
- the size of the cache file.

Run: ``python benchmarks/bench_refer_index.py [--refs 3811] [--sentences-per-ref 2.84]``
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def polygon(rng: np.random.Generator, w: int, h: int) -> list[float]:
    """A random star-shaped polygon of 12-40 vertices inside the image."""
    n = int(rng.integers(12, 41))
    cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
    r = rng.uniform(10, min(w, h) / 3)
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = r * rng.uniform(0.5, 1.0, n)
    xs = np.clip(cx + radii * np.cos(angles), 0, w - 1)
    ys = np.clip(cy + radii * np.sin(angles), 0, h - 1)
    return [round(float(v), 2) for xy in zip(xs, ys) for v in xy]


def write_dataset(root: Path, n_refs: int, sentences_per_ref: float, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    n_images = max(1, int(n_refs / 2.54))
    images = [{"id": i + 1, "height": 480, "width": 640, "file_name": f"COCO_train2014_{i + 1:012d}.jpg"} for i in range(n_images)]
    anns, refs, sent_id, total = [], [], 0, 0
    for k in range(n_refs):
        image_id = int(rng.integers(1, n_images + 1))
        parts = 1 if rng.random() < 0.85 else int(rng.integers(2, 4))
        segs = [polygon(rng, 640, 480) for _ in range(parts)]
        xs = [v for s in segs for v in s[0::2]]
        ys = [v for s in segs for v in s[1::2]]
        ann_id = 1000 + k
        anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": 1.0, "segmentation": segs,
                     "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})
        n_sent = max(1, int(rng.poisson(sentences_per_ref)))
        sents = []
        for _ in range(n_sent):
            sent_id += 1
            words = " ".join(rng.choice(["man", "left", "red", "shirt", "the", "on", "woman", "chair", "far", "right"], 4))
            sents.append({"sent_id": sent_id, "sent": words, "raw": words, "tokens": words.split()})
        total += n_sent
        refs.append({"ref_id": k, "ann_id": ann_id, "image_id": image_id, "category_id": 1, "split": "val",
                     "sent_ids": [s["sent_id"] for s in sents], "sentences": sents, "file_name": "x"})
    d = root / "refer_seg" / "refcoco"
    d.mkdir(parents=True)
    (d / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    (d / "instances.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    return total


CHILD = """
import sys, time
from pathlib import Path
from harness.data.conventions import Conventions
from harness.data.sources.refer import ReferSource
t = time.perf_counter()
n = len(ReferSource({"dataset": "refcoco"}, Conventions(), Path(sys.argv[1]), Path(sys.argv[2])).samples("val"))
print(f"{time.perf_counter() - t:.4f} {n}")
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refs", type=int, default=3811, help="objects in the split (RefCOCO val: 3,811)")
    parser.add_argument("--sentences-per-ref", type=float, default=2.84, help="mean sentences per object (RefCOCO val: 2.84)")
    args = parser.parse_args(argv)

    from harness.data.conventions import Conventions
    from harness.data.sources import refer
    from harness.data.sources.refer import ReferSource

    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "data", Path(tmp) / "cache"
        total = write_dataset(root, args.refs, args.sentences_per_ref)
        sizes = {p.name: p.stat().st_size for p in (root / "refer_seg" / "refcoco").iterdir()}

        def enumerate_split() -> tuple[float, list[Any]]:
            t = time.perf_counter()
            samples = ReferSource({"dataset": "refcoco"}, Conventions(), root, cache).samples("val")
            return time.perf_counter() - t, samples

        first, samples = enumerate_split()
        refer._LOADED.clear()  # what a new process would have: nothing in memory
        cached, again = enumerate_split()
        assert [s.id for s in again] == [s.id for s in samples]
        child = subprocess.run([sys.executable, "-c", CHILD, str(root), str(cache)], capture_output=True, text=True, check=True)
        child_time = float(child.stdout.split()[0])
        index = sorted((cache / "index" / "refer").glob("*.jsonl"))
        print(f"synthetic split: {len(samples)} expressions ({total} written), {args.refs} objects; "
              f"refs(unc).p {sizes['refs(unc).p'] / 1e6:.1f} MB, instances.json {sizes['instances.json'] / 1e6:.1f} MB")
        print(f"first parse (empty cache):          {first:.2f} s")
        print(f"cached enumeration (same process):  {cached:.3f} s")
        print(f"cached enumeration (new process):   {child_time:.3f} s")
        print(f"cache file: {sum(p.stat().st_size for p in index) / 1e6:.2f} MB ({len(index)} file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
