"""How many bytes does one sample cost on the pipe to an isolated worker? A printed figure.

Runs the ``empty`` adapter in a real worker (``python -m harness.run.worker``, this interpreter)
over the shapes suite, one request per image (every sentence of an image in one batch, as the
runner does with the default batch size of 8), and counts the bytes of the ``predict``
requests actually written to the worker's stdin: their JSON lines, framing included; hello,
load and the replies are not counted. The figure depends on the length of the image paths
(the cache directory), which is printed beside it.

Run: ``python benchmarks/bench_pipe.py [--split val] [--batch-size 8]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


class CountingPipe:
    """Stands in for the worker's stdin and counts what is written through it."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.written = raw, 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return self.raw.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def measure(split: str, batch_size: int) -> dict[str, float]:
    from harness.data.samples import load_samples
    from harness.data.suites import load_suite
    from harness.run.predict import image_groups
    from harness.run.remote import RemoteAdapter

    samples = load_samples(load_suite("shapes"), [split], None)[split]
    adapter = RemoteAdapter("empty", python=sys.executable)
    adapter.load("cpu")
    channel = adapter._channel[0]
    assert channel is not None
    pipe = CountingPipe(channel.proc.stdin)
    channel.proc.stdin = pipe  # type: ignore[assignment]
    requests = 0
    try:
        for _, group in image_groups(samples):
            for i in range(0, len(group), batch_size):
                batch = group[i : i + batch_size]
                # What the runner hands an adapter: a Query where the engine has one, else the Sample.
                given = [s.query() if hasattr(s, "query") else s for s in batch]
                adapter.predict(None, given)  # type: ignore[arg-type]  # a remote adapter never needs the pixels
                requests += 1
    finally:
        adapter.close()
    return {"samples": len(samples), "requests": requests, "bytes": pipe.written, "bytes_per_sample": pipe.written / len(samples),
            "image_path_chars": len(samples[0].image)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="val")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HARNESS_CACHE"] = str(Path(tmp) / "cache")
        m = measure(args.split, args.batch_size)
    print(f"shapes/{args.split}: {m['samples']:.0f} samples in {m['requests']:.0f} predict requests, {m['bytes']:.0f} bytes "
          f"= {m['bytes_per_sample']:.0f} B/sample (image paths of {m['image_path_chars']:.0f} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
