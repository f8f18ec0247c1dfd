"""How much model work does LENS do per sample, upstream's way and the adapter's? Printed figures.

Drives the upstream LENS model class (hustvl/LENS ``SAMR1ForConditionalGeneration_qwen2p5``) in a
tiny random configuration on CPU, at real token counts: 640x480 images, so the language model
sees ``smart_resize(480, 640, 28, max_pixels=1e6)`` = 476x644 pixels = 34x46 ViT patches = 391
image tokens, and a scripted answer of ``--answer-tokens`` tokens plus the end token (a RefCOCO
box ``[x1, y1, x2, y2]`` is about 20 Qwen tokens: one token per digit). Two workloads:

- RefCOCO val shape: 5 images, 13 refs, 36 sentences (7.2 sentences per image, 2.8 per ref);
- ReasonSeg shape: 3 images, one sentence each.

"Upstream" is ``variant: refcoco-upstream`` (``reasonseg-ft`` with the same protocol for
ReasonSeg): one call per ref, the checkpoint's padding side, every copy of the image encoded and
every prompt run in full in both passes. The tests (``adapters/lens/tests/test_sameness_tiny.py``)
show it equals ``evaluate_single`` bit for bit. "Adapter" is the default: per image, left
padding, one ViT encode and one SAM encode per image, one prefill of the shared prefix per
image and pass. The work is read from ``Adapter.stats()``; masks are compared between the two.

The H100 time estimate converts those counts with stated assumptions (``--tflops``, ``--mfu``,
``--bandwidth``...): compute-bound stages (ViT, prefill, mask pass, SAM encoder) at
2 x parameters FLOPs per token / (peak x MFU); each decoding step memory-bound, reading the
language model's bf16 weights once per step for the whole batch. Attention FLOPs and the
KV-cache reads are left out (small at these lengths).

Run (the LENS adapter's environment, a hustvl/LENS checkout):
``HARNESS_LENS_REPO=/path/to/LENS PYTHONPATH=.:adapters/lens:adapters/lens/tests python benchmarks/bench_lens.py``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "adapters" / "lens", ROOT / "adapters" / "lens" / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

REFCOCO_REFS = [[3, 2, 2], [3, 3, 1], [2, 3, 2], [3, 3, 2], [3, 2, 2]]  # sentences per ref, per image: 36 / 5 = 7.2
REASONSEG_IMAGES = 3
WORDS = ["man", "woman", "dog", "cat", "person", "left", "right", "red car", "blue dog", "small cat", "the man on the left",
         "the woman in the middle", "large green front"]

# Qwen2.5-VL-3B + LENS, for the estimate (parameter counts of the released checkpoint's modules, rounded)
LLM_PARAMS = 3.09e9  # Qwen2.5-3B decoder (embeddings excluded from FLOPs are within rounding)
LLM_BYTES = 2 * 3.09e9  # its bf16 weights, read once per decoding step
VIT_PARAMS = 0.67e9  # Qwen2.5-VL vision tower, per 14x14 patch
SAM_ENCODE_FLOP = 0.8e12  # SAM2-L Hiera image encoder at 1024x1024 (assumed, unconfirmed)


def build(workdir: Path, answer_tokens: int) -> Path:
    import tiny
    from harness_lens.model import import_upstream, resolve_upstream

    samr1 = import_upstream(resolve_upstream(None))
    script = [f"<a{i}>" for i in range(answer_tokens)]
    tiny.build_lens_checkpoint(workdir, samr1, script=script)
    return workdir


def adapter(checkpoint: Path, **options):
    import tiny
    from harness_lens.adapter import LensAdapter

    a = LensAdapter(checkpoint=str(checkpoint), sam_config=tiny.TINY_SAM_CONFIG, sam_overrides=tiny.tiny_sam_overrides(),
                    max_length=4096, **options)
    a.load("cpu")
    return a


def workload(shape: str) -> list[tuple[np.ndarray, list]]:
    from harness import masks
    from harness.types import GroundTruth, Sample

    rng = np.random.default_rng(0)
    gt = GroundTruth(mask=masks.empty(480, 640))
    out = []
    if shape == "refcoco":
        ref, sent = 0, 0
        for image_refs in REFCOCO_REFS:
            samples = []
            for count in image_refs:
                for _ in range(count):
                    samples.append(Sample(id=f"refcoco/unc/val/{ref}/{sent}", image=f"{ref}.jpg", expression=WORDS[sent % len(WORDS)],
                                          gt=gt, dataset="refcoco", split="val").query())
                    sent += 1
                ref += 1
            out.append((rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8), samples))
    else:
        for i in range(REASONSEG_IMAGES):
            out.append((rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8),
                        [Sample(id=f"reasonseg/val/{i}", image=f"{i}.jpg", expression=WORDS[-1 - i], gt=gt, dataset="reasonseg",
                                split="val").query()]))
    return out


def run(a, work) -> tuple[dict[str, float], list, float]:
    t0 = time.perf_counter()
    preds = []
    for image, samples in work:
        preds.extend(a.predict(image, samples))
    return a.stats(), preds, time.perf_counter() - t0


STAGES = [
    ("ViT patches", "vision_encoder_patches"),
    ("LLM prefill tokens", "prefill_tokens"),
    ("LLM decode tokens", "decode_steps"),
    ("LLM mask-pass tokens", "mask_pass_tokens"),
    ("SAM encodes", "segmenter_images"),
]


def estimate_ms(s: dict[str, float], n: int, args: argparse.Namespace) -> float:
    """H100 milliseconds per sample from the counts (see the module docstring)."""
    flops = args.tflops * 1e12 * args.mfu
    compute = (2 * VIT_PARAMS * s["vision_encoder_patches"]
               + 2 * LLM_PARAMS * (s["prefill_tokens"] + s["mask_pass_tokens"])
               + SAM_ENCODE_FLOP * s["segmenter_images"]) / flops
    decode = s["decode_passes"] * LLM_BYTES / (args.bandwidth * 1e12 * args.bandwidth_efficiency)
    return 1000 * (compute + decode) / n


def table(shape: str, up: dict[str, float], ours: dict[str, float], n: int, args: argparse.Namespace) -> tuple[float, str]:
    lines = [f"\n{shape}: {n} samples", f"{'per sample':<28}{'upstream':>12}{'adapter':>12}{'ratio':>8}"]
    for label, key in STAGES:
        u, o = up[key] / n, ours[key] / n
        lines.append(f"{label:<28}{u:>12.1f}{o:>12.1f}{(u / o if o else float('inf')):>8.2f}")
    llm = ("prefill_tokens", "decode_steps", "mask_pass_tokens")
    u_llm, o_llm = sum(up[k] for k in llm) / n, sum(ours[k] for k in llm) / n
    u_all, o_all = u_llm + up["vision_encoder_patches"] / n, o_llm + ours["vision_encoder_patches"] / n
    ratio = u_all / o_all
    lines.append(f"{'LLM token-passes':<28}{u_llm:>12.1f}{o_llm:>12.1f}{u_llm / o_llm:>8.2f}")
    lines.append(f"{'model token-passes (+ViT)':<28}{u_all:>12.1f}{o_all:>12.1f}{ratio:>8.2f}")
    lines.append(f"{'sequences per LLM forward':<28}{up['sequences_per_forward']:>12.2f}{ours['sequences_per_forward']:>12.2f}")
    u_ms, o_ms = estimate_ms(up, n, args), estimate_ms(ours, n, args)
    lines.append(f"{'H100 estimate, ms':<28}{u_ms:>12.1f}{o_ms:>12.1f}{u_ms / o_ms:>8.2f}")
    return ratio, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answer-tokens", type=int, default=20, help="scripted answer length before the end token")
    parser.add_argument("--tflops", type=float, default=989.0, help="H100 SXM dense bf16 peak TFLOP/s")
    parser.add_argument("--mfu", type=float, default=0.4, help="fraction of peak reached by the compute-bound stages")
    parser.add_argument("--bandwidth", type=float, default=3.35, help="H100 SXM HBM3 TB/s")
    parser.add_argument("--bandwidth-efficiency", type=float, default=0.7, help="fraction of bandwidth a decoding step reaches")
    args = parser.parse_args(argv)
    from harness_lens.manifest import UPSTREAM_PROTOCOL

    from harness import masks

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build(Path(tmp), args.answer_tokens)
        print(f"tiny LENS (upstream class), fp32 CPU; 640x480 images -> 391 image tokens, 1564 ViT patches; "
              f"answer {args.answer_tokens} tokens + end")
        print(f"estimate: {args.tflops:.0f} TFLOP/s bf16 x {args.mfu:.0%} for ViT/prefill/mask pass/SAM "
              f"(2 x {LLM_PARAMS / 1e9:.2f}e9 FLOP per LLM token, 2 x {VIT_PARAMS / 1e9:.2f}e9 per patch, "
              f"{SAM_ENCODE_FLOP / 1e12:.1f} TFLOP per SAM2-L encode); decoding {args.bandwidth} TB/s x "
              f"{args.bandwidth_efficiency:.0%}, {LLM_BYTES / 1e9:.1f} GB of weights per step")
        results = {}
        for shape, variant, goal in (("refcoco", "refcoco", 3.0), ("reasonseg", "reasonseg-ft", 2.0)):
            work = workload(shape)
            n = sum(len(s) for _, s in work)
            up_stats, up_preds, up_t = run(adapter(checkpoint, variant=variant, **UPSTREAM_PROTOCOL), work)
            our_stats, our_preds, our_t = run(adapter(checkpoint, variant=variant), work)
            same = sum(masks.decode(a.mask).tobytes() == masks.decode(b.mask).tobytes() for a, b in zip(up_preds, our_preds))
            texts = sum(a.text == b.text for a, b in zip(up_preds, our_preds))
            ratio, text = table(f"{shape} shape", up_stats, our_stats, n, args)
            print(text)
            print(f"masks identical {same}/{n}, texts identical {texts}/{n}; CPU wall {up_t:.1f} s vs {our_t:.1f} s; "
                  f"goal >= {goal:.0f}x model token-passes: {'met' if ratio >= goal else 'NOT met'} ({ratio:.2f}x)")
            results[shape] = ratio
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
