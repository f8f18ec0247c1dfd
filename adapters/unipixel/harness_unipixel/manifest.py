"""What the UniPixel adapter is: checkpoints, outputs, upstream, environment. Plain data, importable without torch."""

from __future__ import annotations

from typing import Any

NAME = "unipixel"
VERSION = "1"
DESCRIPTION = "UniPixel (PolyU-ChenLab/UniPixel, Qwen2.5-VL + SAM2.1-B+): <|seg|> token's hidden state prompts SAM2"
UPSTREAM = {"repo": "PolyU-ChenLab/UniPixel", "revision": "5c8e941", "env": "HARNESS_UNIPIXEL_REPO",
            "script": "unipixel/eval/infer_seg.py"}
OUTPUTS = ("mask", "text")
CHECKPOINTS = {
    "PolyU-ChenLab/UniPixel-3B": "co-trained 3B (Qwen2.5-VL-3B-Instruct + SAM 2.1 Hiera-B+), model name unipixel-3b",
    "PolyU-ChenLab/UniPixel-7B": "co-trained 7B (Qwen2.5-VL-7B-Instruct + SAM 2.1 Hiera-B+), model name unipixel-7b",
}
# What `harness setup unipixel` downloads and `harness doctor unipixel` looks for, per model name.
DEFAULT_VARIANT = "unipixel-3b"
WEIGHTS: dict[str, tuple[str, ...]] = {"unipixel-3b": ("PolyU-ChenLab/UniPixel-3B",), "unipixel-7b": ("PolyU-ChenLab/UniPixel-7B",)}
DTYPE = "bfloat16"  # on CUDA
MEMORY_GB: dict[str, float] = {"unipixel-3b": 12.0, "unipixel-7b": 22.0}
MEMORY_SOURCE = ("estimate: Qwen2.5-VL (3.8B / 8.3B) + SAM 2.1 B+ (0.08B) parameters x 2 bytes (bf16; README: the 3B "
                 "checkpoint is ~8 GB) plus ~4-6 GB for activations and the KV cache of 512 new tokens; not measured")
ENVIRONMENT = {"transformers": "4.53.3", "torch": "2.7.1+cu128 upstream (2.13.0 CPU in the tests)",
               "flash_attn": "2.8.2 (optional)", "python": ">=3.10"}


def manifest() -> dict[str, Any]:
    return {"name": NAME, "version": VERSION, "description": DESCRIPTION, "upstream": dict(UPSTREAM),
            "outputs": list(OUTPUTS), "box_space": "pixel", "checkpoints": dict(CHECKPOINTS),
            "environment": dict(ENVIRONMENT)}
