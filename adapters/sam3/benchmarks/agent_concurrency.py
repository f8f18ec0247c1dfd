"""Samples per second of ``sam3-agent`` with one session at a time against ``concurrency`` sessions in flight.

The stand-in LLM server (tests/standin_llm.py, on 127.0.0.1) answers after ``--latency`` seconds, like an LLM
server; SAM 3 is the tiny random model of the tests (tests/tiny.py, scores spread). Each sample takes the
stand-in's default conversation: segment_phrase, then select_masks_and_return (2 LLM calls, 1 SAM 3 call).
The figures measure the agent's own machinery (sessions, request handling, upstream's rendering and mask
post-processing, SAM 3 batching), not an LLM's speed.

    python adapters/sam3/benchmarks/agent_concurrency.py --samples 48 --concurrency 1 4 8 16

Needs HARNESS_SAM3_REPO (a facebookresearch/sam3 checkout) and the adapter's test environment.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from harness.modelkit.testing import import_torchvision_on_cpu_torch  # noqa: E402

import_torchvision_on_cpu_torch()

import numpy as np  # noqa: E402
from harness.types import Query  # noqa: E402
from standin_llm import StandIn  # noqa: E402
from tiny import save_tiny_sam3  # noqa: E402

from harness_sam3.agent.adapter import Sam3AgentAdapter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--per-image", type=int, default=4, help="samples per image")
    parser.add_argument("--latency", type=float, default=0.2, help="the stand-in's seconds per reply")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--batch-size", type=int, default=0, help="samples per predict_many call (default: 4 x concurrency)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n_images = -(-args.samples // args.per_image)
    images = [rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8) for _ in range(n_images)]
    queries = [(k, Query(id=f"b/val/{k}/{j}", image=f"{k}.png", expression=f"thing {k} {j}", dataset="b", split="val"))
               for k in range(n_images) for j in range(args.per_image)][: args.samples]
    model = save_tiny_sam3(Path(tempfile.mkdtemp()), confident=True)
    print(f"{args.samples} samples on {n_images} images of 320x240, stand-in latency {args.latency:g} s per reply, tiny SAM 3 on CPU")
    base = None
    with StandIn(delay=args.latency) as server:
        for concurrency in args.concurrency:
            adapter = Sam3AgentAdapter(model_path=model, llm_url=server.url, llm_model=server.model, concurrency=concurrency)
            adapter.check()
            adapter.load("cpu")
            batch = args.batch_size or 4 * concurrency
            start = time.perf_counter()
            for i in range(0, len(queries), batch):
                chunk = queries[i : i + batch]
                items: dict[int, list[Query]] = {}
                for k, q in chunk:
                    items.setdefault(k, []).append(q)
                adapter.predict_many([(images[k], qs) for k, qs in items.items()])
            seconds = time.perf_counter() - start
            stats = adapter.stats()
            rate = args.samples / seconds
            base = base or rate
            print(f"concurrency {concurrency:3d} (batch {batch:3d}): {rate:6.2f} samples/s ({rate / base:4.1f}x), "
                  f"{stats['llm_calls'] / args.samples:.1f} LLM calls/sample, max {server.max_in_flight} in flight, "
                  f"{stats['forward_passes']:.0f} SAM 3 prompts in {stats['sam_batches']:.0f} forwards, "
                  f"failed {stats['sessions_failed']:.0f}")
            server.max_in_flight = 0
            adapter.close()


if __name__ == "__main__":
    main()
