"""What the Seg-Zero adapters are: checkpoints per model name, upstream, weights, memory. Plain data, importable
without torch, so `harness setup segzero` and `harness doctor segzero` read it without the model's environment."""

from __future__ import annotations

# The model code is transformers' Qwen2.5-VL and PyPI's sam2: no checkout is needed to run. The pinned repository is
# the one the conformance tests import the prompts and evaluation scripts from (VisionReasoner's scripts are in it).
UPSTREAM = {"repo": "dvlab-research/Seg-Zero", "revision": "42a3345", "env": "HARNESS_SEGZERO_REPO"}

SAM2_LARGE = "facebook/sam2-hiera-large"  # every model's segmenter (SAM2ImagePredictor.from_pretrained)
MODELS = {
    "segzero": "Ricky06662/Seg-Zero-7B",
    "visionreasoner": "Ricky06662/VisionReasoner-7B",
    "segzero-single": "Ricky06662/Seg-Zero-7B",
    "segzero-reasonseg": "Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest",
}

# What `harness setup segzero` downloads and `harness doctor segzero` looks for, per model name.
DEFAULT_VARIANT = "segzero"
WEIGHTS: dict[str, tuple[str, ...]] = {name: (ckpt, SAM2_LARGE) for name, ckpt in MODELS.items()}
DTYPE = "bfloat16"  # on CUDA (adapter: dtype auto); float32 on CPU
MEMORY_GB: dict[str, float] = {name: 24.0 for name in MODELS}
MEMORY_SOURCE = ("estimate: Qwen2.5-VL-7B 8.3B + SAM2-L 0.22B parameters x 2 bytes (bf16, ~17 GB) plus ~7 GB for the "
                 "KV cache of 1024-2048 new tokens over a batch of sentences at 840x840; not measured")
