"""How much model work does LENS do per sample, upstream's way and the adapter's? Printed figures.

Drives the upstream LENS model class (hustvl/LENS ``SAMR1ForConditionalGeneration_qwen2p5``) in a
tiny random configuration on CPU, at real token counts: 640x480 images, so the language model
sees ``smart_resize(480, 640, 28, max_pixels=1e6)`` = 476x644 pixels = 34x46 ViT patches = 391
image tokens, and a scripted answer of ``--answer-tokens`` tokens plus the end token (a RefCOCO
box ``[x1, y1, x2, y2]`` is about 20 Qwen tokens: one token per digit). Two workloads:

- RefCOCO val shape: 5 images, 13 refs, 36 sentences (7.2 sentences per image, 2.8 per ref);
- ReasonSeg shape: 8 images, one sentence each.

"Upstream" is ``variant: refcoco-upstream`` (``reasonseg-ft`` with the same protocol for
ReasonSeg), driven as upstream's scripts run: one call per ref, the checkpoint's padding side,
every copy of the image encoded and every prompt run in full in both passes. The tests
(``adapters/lens/tests/test_sameness_tiny.py``) show it equals ``evaluate_single`` bit for bit.
"Adapter" is the default (left padding, one ViT encode and one SAM encode per image, one prefill
of each image's shared prefix per pass), driven as the engine drives a ``multi_image`` adapter:
``harness.run.batches.plan_batches`` cuts the run into batches of ``--batch-size`` consecutive
samples spanning images, each one ``predict_many`` call (one generation and one mask pass for the
whole batch). "+ cache" is the same with the non-default ``mask_from_cache: true`` (the mask pass
continues from the generation's cache: 65 positions per sentence). The work is read from
``Adapter.stats()``; masks and texts are compared with upstream's, and for "+ cache" the 256x256
logits with the default's (which the tests hold within 1e-5 of upstream's).

The H100 time estimate converts those counts with stated assumptions (``--tflops``, ``--mfu``,
``--bandwidth``...): compute-bound stages (ViT, prefill, mask pass, SAM encoder) at
2 x parameters FLOPs per token / (peak x MFU); each decoding step memory-bound, reading the
language model's bf16 weights once per step for the whole batch. Attention FLOPs and the
KV-cache reads are left out (small at these lengths).

With ``--threads 1,2,all`` it measures instead how the adapter's masks compare with upstream's at
each number of intra-op (BLAS) threads (``torch.set_num_threads``; ``all`` is every core) on the
RefCOCO shape: a batch of another shape sums in another order, and a logit near the threshold can
cross it. Per thread count it prints the masks identical to upstream's, and for each mask that
differs the pixels that differ and its IoU with upstream's; the same against upstream at the first
count given, and upstream's own masks against upstream's there (the same question for upstream).

Run (the LENS adapter's environment, a hustvl/LENS checkout):
``HARNESS_LENS_REPO=/path/to/LENS PYTHONPATH=.:adapters/lens:adapters/lens/tests python benchmarks/bench_lens.py [--threads 1,2,all]``
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
REASONSEG_IMAGES = 8
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

    from harness.modelkit.testing import import_torchvision_on_cpu_torch

    import_torchvision_on_cpu_torch()  # transformers imports torchvision, whose PyPI wheel wants a CUDA torch's kernels

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


def run_upstream(a, work) -> tuple[dict[str, float], list, float]:
    """One call per image (the variant then runs one batch per ref), as upstream's scripts loop."""
    t0 = time.perf_counter()
    preds = []
    for image, samples in work:
        preds.extend(a.predict(image, samples))
    return a.stats(), preds, time.perf_counter() - t0


def engine_batches(work, batch_size: int, multi_image: bool) -> list[list[tuple[np.ndarray, list]]]:
    """The run's batches as the engine plans them (``plan_batches``), each as predict_many's items."""
    from harness.run.batches import plan_batches

    planned = plan_batches([(str(i), samples) for i, (_, samples) in enumerate(work)], batch_size, multi_image)
    batches = []
    for entries in planned:
        items: list[tuple[np.ndarray, list]] = []
        for e in entries:
            if items and items[-1][0] is work[int(e.path)][0]:
                items[-1][1].append(e.sample)
            else:
                items.append((work[int(e.path)][0], [e.sample]))
        batches.append(items)
    return batches


def run_engine(a, batches) -> tuple[dict[str, float], list, float]:
    t0 = time.perf_counter()
    preds = []
    for items in batches:
        for got in a.predict_many(items):
            preds.extend(got)
    return a.stats(), preds, time.perf_counter() - t0


def logit_gap(default, cached, batches) -> float:
    """Largest 256x256 logit difference between two adapters on the same batches (run after counting)."""
    gap = 0.0
    for items in batches:
        parts = [(image, default.preprocessing(image), [q.expression for q in samples]) for image, samples in items]
        _, ours, _ = default._run_parts(parts)
        _, theirs, _ = cached._run_parts(parts)
        gap = max(gap, max(float((x - y).abs().max()) for x, y in zip(ours, theirs)))
    return gap


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


def table(shape: str, columns: dict[str, dict[str, float]], n: int, args: argparse.Namespace) -> tuple[dict[str, float], str]:
    """Per-sample counts of each column, and each non-upstream column's ratio to upstream."""
    names = list(columns)
    up = columns[names[0]]
    head = f"{'per sample':<28}{names[0]:>10}" + "".join(f"{k:>10}{'ratio':>7}" for k in names[1:])
    lines = [f"\n{shape}: {n} samples", head]
    llm = ("prefill_tokens", "decode_steps", "mask_pass_tokens")

    def per(s: dict[str, float], key: str) -> float:
        if key == "llm":
            return sum(s[k] for k in llm) / n
        if key == "all":
            return (sum(s[k] for k in llm) + s["vision_encoder_patches"]) / n
        if key == "ms":
            return estimate_ms(s, n, args)
        return s[key] / n

    rows = [*STAGES, ("LLM token-passes", "llm"), ("model token-passes (+ViT)", "all"), ("H100 estimate, ms", "ms")]
    ratios = {}
    for label, key in rows:
        u = per(up, key)
        line = f"{label:<28}{u:>10.1f}"
        for name in names[1:]:
            o = per(columns[name], key)
            r = u / o if o else float("inf")
            line += f"{o:>10.1f}{r:>7.2f}"
            if key == "all":
                ratios[name] = r
        lines.append(line)
    lines.append(f"{'sequences per LLM forward':<28}" + f"{up['sequences_per_forward']:>10.2f}"
                 + "".join(f"{columns[k]['sequences_per_forward']:>10.2f}{'':>7}" for k in names[1:]))
    return ratios, "\n".join(lines)


def mask_differences(a: list, b: list) -> list[tuple[int, float]]:
    """(pixels that differ, IoU) of each pair of masks that are not identical."""
    from harness import masks

    out = []
    for p, q in zip(a, b):
        x, y = masks.decode(p.mask).astype(bool), masks.decode(q.mask).astype(bool)
        if not np.array_equal(x, y):
            union = int(np.logical_or(x, y).sum())
            out.append((int((x != y).sum()), float(np.logical_and(x, y).sum() / union) if union else 1.0))
    return out


def sameness_at_threads(checkpoint: Path, counts: list[int], batch_size: int) -> None:
    """The default adapter against ``refcoco-upstream`` on the RefCOCO shape, both at each intra-op thread count."""
    import torch
    from harness_lens.manifest import UPSTREAM_PROTOCOL

    work = workload("refcoco")
    n = sum(len(s) for _, s in work)
    first_upstream = None
    for count in counts:
        torch.set_num_threads(count)
        upstream = adapter(checkpoint, variant="refcoco", **UPSTREAM_PROTOCOL)
        _, up_preds, _ = run_upstream(upstream, work)
        default = adapter(checkpoint, variant="refcoco")
        _, our_preds, _ = run_engine(default, engine_batches(work, batch_size, default.multi_image))
        first_upstream = first_upstream or (count, up_preds)
        base = first_upstream[0]
        for name, diffs in (("adapter vs upstream", mask_differences(our_preds, up_preds)),
                            (f"adapter vs upstream at {base}", mask_differences(our_preds, first_upstream[1])),
                            (f"upstream vs upstream at {base}", mask_differences(up_preds, first_upstream[1]))):
            detail = "; ".join(f"{px} px, IoU {iou:.6f}" for px, iou in diffs)
            print(f"{count} thread{'s' if count > 1 else ''}: {name}: masks identical {n - len(diffs)}/{n}"
                  + (f" (differing: {detail})" if diffs else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answer-tokens", type=int, default=20, help="scripted answer length before the end token")
    parser.add_argument("--batch-size", type=int, default=8, help="the engine's --batch-size for the adapter's way")
    parser.add_argument("--tflops", type=float, default=989.0, help="H100 SXM dense bf16 peak TFLOP/s")
    parser.add_argument("--mfu", type=float, default=0.4, help="fraction of peak reached by the compute-bound stages")
    parser.add_argument("--bandwidth", type=float, default=3.35, help="H100 SXM HBM3 TB/s")
    parser.add_argument("--bandwidth-efficiency", type=float, default=0.7, help="fraction of bandwidth a decoding step reaches")
    parser.add_argument("--threads", help="instead: the masks' sameness at these intra-op thread counts, e.g. 1,2,all")
    args = parser.parse_args(argv)
    if args.threads:
        import os

        counts = [len(os.sched_getaffinity(0)) if c == "all" else int(c) for c in args.threads.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            sameness_at_threads(build(Path(tmp), args.answer_tokens), list(dict.fromkeys(counts)), args.batch_size)
        return 0
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
        # ReasonSeg's 2x goal is retired: one sentence per image leaves only the shared prefix to save, and its
        # bound under the sameness rule (the mask pass not continuing from the generation's cache) is 1.97x.
        for shape, variant, goal in (("refcoco", "refcoco", 3.0), ("reasonseg", "reasonseg-ft", None)):
            work = workload(shape)
            n = sum(len(s) for _, s in work)
            upstream = adapter(checkpoint, variant=variant, **UPSTREAM_PROTOCOL)
            up_stats, up_preds, up_t = run_upstream(upstream, work)
            default, cached = adapter(checkpoint, variant=variant), adapter(checkpoint, variant=variant, mask_from_cache=True)
            batches = engine_batches(work, args.batch_size, default.multi_image)
            our_stats, our_preds, our_t = run_engine(default, batches)
            cache_stats, cache_preds, cache_t = run_engine(cached, batches)
            ratios, text = table(f"{shape} shape, adapter in {len(batches)} batches of up to {args.batch_size} across images",
                                 {"upstream": up_stats, "adapter": our_stats, "+ cache": cache_stats}, n, args)
            print(text)
            up_masks = [masks.decode(p.mask) for p in up_preds]
            same = sum(np.array_equal(u, masks.decode(p.mask)) for u, p in zip(up_masks, our_preds))
            texts = sum(a.text == b.text for a, b in zip(up_preds, our_preds))
            cache_texts = sum(a.text == b.text for a, b in zip(up_preds, cache_preds))
            diffs, ious = [], []
            for u, p in zip(up_masks, cache_preds):
                m = masks.decode(p.mask)
                diffs.append(int((u != m).sum()))
                union = np.logical_or(u, m).sum()
                ious.append(float(np.logical_and(u, m).sum() / union) if union else 1.0)
            gap = logit_gap(default, cached, batches)
            print(f"adapter: masks identical to upstream {same}/{n}, texts {texts}/{n}; CPU wall {up_t:.1f} s upstream, "
                  f"{our_t:.1f} s adapter, {cache_t:.1f} s + cache")
            print(f"+ cache: texts identical {cache_texts}/{n}; masks differ in up to {max(diffs)} of {up_masks[0].size} pixels "
                  f"(min IoU {min(ious):.4f}); logits up to {gap:.2g} from the default's")
            for name, ratio in ratios.items():
                verdict = f"goal >= {goal:.0f}x: {'met' if ratio >= goal else 'NOT met'}" if goal else "no goal"
                print(f"model token-passes saved, {name}: {ratio:.2f}x ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
