"""What the GLaMM adapter is: checkpoints, variants, upstream, weights, memory. Plain data, importable without torch,
so `harness setup glamm` and `harness doctor glamm` read it without the model's environment."""

from __future__ import annotations

UPSTREAM = {"repo": "mbzuai-oryx/groundingLMM", "revision": "e74865f", "env": "HARNESS_GLAMM_REPO"}
PYTHON = "3.11"  # GLaMM's transformers 4.28 build and its old tokenizers (docs/gpu.md)

CHECKPOINTS = {
    "refseg": "MBZUAI/GLaMM-RefSeg",  # fine-tuned on RefCOCO/+/g: the referring-segmentation rows
    "grand": "MBZUAI/GLaMM-GranD-Pretrained",  # pretrained on GranD only: the zero-shot row
}
PROTOCOLS = ("deterministic", "glamm")
VARIANTS: dict[str, dict[str, str]] = {
    **{name: {"checkpoint": ckpt, "protocol": "deterministic"} for name, ckpt in CHECKPOINTS.items()},
    **{f"{name}-glamm-protocol": {"checkpoint": ckpt, "protocol": "glamm"} for name, ckpt in CHECKPOINTS.items()},
}
DEFAULT_VARIANT = "refseg"
# The CLIP tower the checkpoint's config names; loaded from the Hub beside the checkpoint.
VISION_TOWER = "openai/clip-vit-large-patch14-336"

# What `harness setup glamm` downloads and `harness doctor glamm` looks for, per variant.
WEIGHTS: dict[str, tuple[str, ...]] = {name: (v["checkpoint"], VISION_TOWER) for name, v in VARIANTS.items()}
DTYPE = "bfloat16"  # on CUDA (model.resolve_dtype); float32 on CPU
MEMORY_GB: dict[str, float] = {name: 20.0 for name in VARIANTS}
MEMORY_SOURCE = ("estimate: Vicuna-7B 6.7B + CLIP-L 0.3B + SAM ViT-H 0.64B + region encoder parameters x 2 bytes (bf16, "
                 "~15.5 GB) plus ~4 GB for SAM's 1024 image features and the sentences' activations; not measured")
