"""What the Sa2VA adapter is: model names, checkpoints, upstream, environment. Plain data, importable without torch."""

from __future__ import annotations

from typing import Any

NAME = "sa2va"
VERSION = "1"
DESCRIPTION = "Sa2VA v2 (bytedance/Sa2VA): MLLM + SAM2-L, [SEG] hidden state prompts SAM2 (predict_forward)"
UPSTREAM = {"repo": "bytedance/Sa2VA", "revision": "9832e1a", "env": "HARNESS_SA2VA_REPO",
            "script": "projects/sa2va/evaluation/sa2va_eval_refcoco.py", "model_code": "projects/sa2va/hf/models*/"}
OUTPUTS = ("mask", "text", "reasoning")
# model name -> Hub checkpoint (bytedance/Sa2VA README, model zoo table)
MODELS = {
    "sa2va-qwen2.5vl-3b": "ByteDance/Sa2VA-Qwen2_5-VL-3B",
    "sa2va-qwen2.5vl-7b": "ByteDance/Sa2VA-Qwen2_5-VL-7B",
    "sa2va-qwen3vl-4b": "ByteDance/Sa2VA-Qwen3-VL-4B",
    "sa2va-internvl3-2b": "ByteDance/Sa2VA-InternVL3-2B",
    "sa2va-internvl3-8b": "ByteDance/Sa2VA-InternVL3-8B",
    "sa2va-internvl3-14b": "ByteDance/Sa2VA-InternVL3-14B",
}
# What `harness setup sa2va` downloads and `harness doctor sa2va` looks for, per model name (remote code included).
DEFAULT_VARIANT = "sa2va-qwen2.5vl-3b"
WEIGHTS: dict[str, tuple[str, ...]] = {name: (hub_id,) for name, hub_id in MODELS.items()}
DTYPE = "bfloat16"  # on CUDA (adapter.resolve_options)
MEMORY_GB: dict[str, float] = {"sa2va-qwen2.5vl-3b": 12.0, "sa2va-qwen2.5vl-7b": 22.0, "sa2va-qwen3vl-4b": 14.0,
                               "sa2va-internvl3-2b": 9.0, "sa2va-internvl3-8b": 24.0, "sa2va-internvl3-14b": 38.0}
MEMORY_SOURCE = ("estimate: the MLLM's parameters plus SAM2-L's 0.22B x 2 bytes (bf16; README: the 3B checkpoint is ~8 GB) "
                 "plus ~4-8 GB for activations and the KV cache; not measured")
ENVIRONMENT = {"transformers": "4.57.0 (pyproject extra 'latest'; 4.49.0 'legacy' for the InternVL2.5 line)",
               "torch": ">=2.6 cu124 upstream (2.13.0 CPU in the tests)", "flash_attn": "2.7.3 (optional)",
               "python": "3.11 upstream"}


def manifest() -> dict[str, Any]:
    return {"name": NAME, "version": VERSION, "description": DESCRIPTION, "upstream": dict(UPSTREAM),
            "outputs": list(OUTPUTS), "box_space": "pixel", "models": dict(MODELS), "environment": dict(ENVIRONMENT)}
