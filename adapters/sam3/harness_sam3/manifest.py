"""What the SAM 3 adapters are: checkpoint, upstream, weights, memory. Plain data, importable without torch, so
`harness setup sam3` and `harness doctor sam3` read it without the model's environment."""

from __future__ import annotations

# sam3 and sam3-union run transformers' Sam3Model; sam3-agent runs upstream's agent loop from this checkout.
UPSTREAM = {"repo": "facebookresearch/sam3", "revision": "99d02f2", "env": "HARNESS_SAM3_REPO"}
PYTHON = "3.12"  # transformers 5.x (docs/gpu.md)

CHECKPOINT = "facebook/sam3"  # gated: accept its licence on the Hub and set HF_TOKEN (or `hf auth login`) first

# What `harness setup sam3` downloads and `harness doctor sam3` looks for, per model name.
DEFAULT_VARIANT = "sam3"
WEIGHTS: dict[str, tuple[str, ...]] = {name: (CHECKPOINT,) for name in ("sam3", "sam3-union", "sam3-agent")}
DTYPE = "float32"  # the adapters' dtype auto: float32 everywhere, as upstream
MEMORY_GB: dict[str, float] = {name: 8.0 for name in WEIGHTS}
MEMORY_SOURCE = ("estimate: SAM 3's 0.85B parameters x 4 bytes (float32, ~3.4 GB) plus ~4 GB for the 1008x1008 image "
                 "features and the DETR queries over a batch; the agent's LLM runs elsewhere; not measured")
