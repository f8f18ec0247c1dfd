"""What the LISA adapter is: checkpoints, variants, upstream, weights, memory. Plain data, importable without torch,
so `harness setup lisa` and `harness doctor lisa` read it without the model's environment."""

from __future__ import annotations

UPSTREAM = {"repo": "dvlab-research/LISA", "revision": "3cb2d43", "env": "HARNESS_LISA_REPO"}
PYTHON = "3.11"  # LISA's transformers 4.31 and its old tokenizers (docs/gpu.md)

CHECKPOINTS = {
    "7b": "xinlai/LISA-7B-v1",
    "7b-explanatory": "xinlai/LISA-7B-v1-explanatory",
    "13b": "xinlai/LISA-13B-llama2-v1",
    "13b-explanatory": "xinlai/LISA-13B-llama2-v1-explanatory",
}
PROTOCOLS = ("teacher_forced", "generate")
# "<size>" = teacher forcing (LISA's evaluation), "<size>-generate" = chat.py's generation
VARIANTS: dict[str, dict[str, str]] = {
    **{name: {"checkpoint": ckpt, "protocol": "teacher_forced"} for name, ckpt in CHECKPOINTS.items()},
    **{f"{name}-generate": {"checkpoint": ckpt, "protocol": "generate"} for name, ckpt in CHECKPOINTS.items()},
}
DEFAULT_VARIANT = "7b"
# The CLIP tower the checkpoint's config names; loaded from the Hub beside the checkpoint.
VISION_TOWER = "openai/clip-vit-large-patch14"

# What `harness setup lisa` downloads and `harness doctor lisa` looks for, per variant.
WEIGHTS: dict[str, tuple[str, ...]] = {name: (v["checkpoint"], VISION_TOWER) for name, v in VARIANTS.items()}
DTYPE = "bfloat16"  # on CUDA (model.resolve_dtype); float32 on CPU
MEMORY_GB: dict[str, float] = {name: (34.0 if name.startswith("13b") else 20.0) for name in VARIANTS}
MEMORY_SOURCE = ("estimate: LLaVA 7B / 13B + CLIP-L 0.3B + SAM ViT-H 0.64B parameters x 2 bytes (bf16, ~15 / ~28 GB) plus "
                 "~4-6 GB for SAM's 1024 image features and the sentences' activations; not measured")
