"""EVF-SAM throughput: a CPU measurement on the tiny model, and the H100 estimate with its assumptions.

    HARNESS_EVFSAM_REPO=<checkout> python adapters/evfsam/bench/throughput.py [--images 8] [--sentences 3] [--repeats 2]

Measured: samples/s of the adapter on the tiny random models of the tests (``tests/tiny.py``: the real
1024 SAM input and 224 BEiT-3 input, tiny widths) on this machine's CPU, one image per call (``predict``)
against every image in one call (``predict_many``), after a warm-up call; the images are prepared
ahead (``prepare_image``) in both, as the engine's decode-ahead thread does. A CPU figure says what
batching saves in per-call overhead; it says nothing of a GPU's speed.

Estimated: samples/s on one H100 from the FLOPs of the real models (``estimate``), printed with the
assumptions it rests on. No GPU figure here is measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

H100_DENSE_FP16_TFLOPS = 989.0  # H100 SXM, dense fp16/bf16 tensor cores
ASSUMED_UTILISATION = 0.35  # of that peak for SAM's ViT (explicit softmax attention with relative positions)
# sentences per image of the splits (suites/refcoco.yaml official counts; ReasonSeg: one text per image)
SPLITS = {"refcoco val": 10834 / 1500, "refcoco testA": 5657 / 750, "refcocog val": 4896 / 1300, "reasonseg (text[0])": 1.0}


def vit_flops(width: int, depth: int, tokens: int) -> float:
    """Linear layers of ``depth`` transformer blocks (qkv + proj = 4 w^2, MLP 4x = 8 w^2), 2 FLOPs per MAC."""
    return 2.0 * 12 * width**2 * tokens * depth


def attention_flops(tokens_per_window: int, windows: int, width: int, depth: int) -> float:
    """QK^T and AV: 2 matmuls of tokens^2 x width per window, 2 FLOPs per MAC."""
    return 4.0 * tokens_per_window**2 * width * windows * depth


def sam_h_encoder() -> float:
    """SAM ViT-H at 1024: 64 x 64 tokens, 32 blocks 1280 wide; 28 windowed (14 x 14 over the 70 x 70 padded
    grid: 25 windows), 4 global; the 1 x 1 and 3 x 3 neck convolutions to 256 channels; the patch embedding."""
    return (vit_flops(1280, 32, 4096) + attention_flops(196, 25, 1280, 28) + attention_flops(4096, 1, 1280, 4)
            + 2.0 * 4096 * (1280 * 256 + 9 * 256 * 256) + 2.0 * 4096 * 768 * 1280)


def sam2_l_encoder() -> float:
    """Hiera-L at 1024: stages of 2/6/36/4 blocks, 144/288/576/1152 wide on 256^2/128^2/64^2/32^2 tokens; its
    windows 8/4/16/8 and 3 global blocks in stage 3; the FPN's 1 x 1 convolutions to 256 channels."""
    stages = [(144, 2, 65536, 8), (288, 6, 16384, 4), (576, 36, 4096, 16), (1152, 4, 1024, 8)]
    total = 0.0
    for width, depth, tokens, window in stages:
        total += vit_flops(width, depth, tokens)
        local = depth - (3 if width == 576 else 0)
        total += attention_flops(window * window, tokens // (window * window), width, local)
    total += attention_flops(4096, 1, 576, 3)
    total += 2.0 * 256 * (144 * 65536 + 288 * 16384 + 576 * 4096 + 1152 * 1024)
    return total


def beit3_large(text_tokens: int = 14) -> float:
    """BEiT-3-L on one sentence: 197 image tokens (224 / 16 squared + [CLS]) and the sentence's tokens, 24
    blocks 1024 wide (multiway: each token through one expert, so 12 w^2 per token and block)."""
    tokens = 197 + text_tokens
    return vit_flops(1024, 24, tokens) + attention_flops(tokens, 1, 1024, 24)


MASK_DECODER = 5e9  # SAM's two-way transformer over 64 x 64 keys (internal width 128) and its upscaling, per sentence


def estimate() -> list[str]:
    effective = H100_DENSE_FP16_TFLOPS * ASSUMED_UTILISATION * 1e12
    lines = [f"H100 estimate: {H100_DENSE_FP16_TFLOPS:.0f} TFLOPS dense fp16 x {ASSUMED_UTILISATION:.0%} utilisation "
             f"= {effective / 1e12:.0f} TFLOPS; fp16 weights and activations (eval.py --precision fp16); SAM encodes an "
             "image once for all its sentences; BEiT-3 runs once per sentence with the batch's other sentences; "
             "the CPU keeps up (decode + resizes ahead, on enough cores)",
             f"  per image: SAM-H encoder {sam_h_encoder() / 1e12:.2f} TFLOPs, SAM-2-L encoder {sam2_l_encoder() / 1e12:.2f}; "
             f"per sentence: BEiT-3-L {beit3_large() / 1e12:.3f}, mask decoder {MASK_DECODER / 1e12:.3f}"]
    for split, per_image in SPLITS.items():
        cells = []
        for head, encoder in (("evf-sam (SAM-H)", sam_h_encoder()), ("evf-sam2 (SAM-2-L)", sam2_l_encoder())):
            per_sample = encoder / per_image + beit3_large() + MASK_DECODER
            cells.append(f"{head} {effective / per_sample:.0f}/s")
        lines.append(f"  {split} ({per_image:.2f} sentences per image): " + ", ".join(cells))
    return lines


def measure(images: int, sentences: int, repeats: int) -> list[str]:
    tests = Path(__file__).resolve().parents[1] / "tests"
    sys.path.insert(0, str(tests))
    from harness.modelkit.testing import import_torchvision_on_cpu_torch

    import_torchvision_on_cpu_torch()
    from harness.types import Query
    from tiny import ARCHITECTURE, SENTENCES, save_checkpoint, save_tokenizer

    from harness_evfsam.adapter import EvfSamAdapter
    from harness_evfsam.model import resolve_upstream

    repo = resolve_upstream()
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8) for _ in range(images)]
    items = [(p, [Query(id=f"refcoco/unc/val/{i}/{j}", image="x.jpg", expression=SENTENCES[(i + j) % len(SENTENCES)],
                        dataset="refcoco", split="val") for j in range(sentences)]) for i, p in enumerate(pictures)]
    n = images * sentences
    lines = [f"CPU (tiny models, {images} images of 480 x 640 x {sentences} sentences, best of {repeats}):"]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = save_tokenizer(Path(tmp))
        for model_type in ("ori", "sam2"):
            checkpoint = save_checkpoint(Path(tmp) / model_type, repo, model_type, tokenizer)
            adapter = EvfSamAdapter(checkpoint=str(checkpoint), model_type=model_type, architecture=ARCHITECTURE[model_type])
            adapter.load("cpu")
            adapter.predict_many(items[:1])  # warm-up
            timings = {}
            for mode in ("one image per call", "all images in one call"):
                best = float("inf")
                for _ in range(repeats):
                    for picture, _ in items:
                        adapter.prepare_image(picture)
                    start = time.perf_counter()
                    if mode == "one image per call":
                        for item in items:
                            adapter.predict_many([item])
                    else:
                        adapter.predict_many(items)
                    best = min(best, time.perf_counter() - start)
                timings[mode] = n / best
            lines.append(f"  {model_type}: " + ", ".join(f"{mode} {rate:.2f} samples/s" for mode, rate in timings.items())
                         + f" (x{timings['all images in one call'] / timings['one image per call']:.2f})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--sentences", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--estimate-only", action="store_true", help="print the H100 estimate without measuring")
    args = parser.parse_args()
    print("\n".join(estimate()))
    if not args.estimate_only:
        print("\n".join(measure(args.images, args.sentences, args.repeats)))


if __name__ == "__main__":
    main()
