"""What the LENS adapter is: checkpoints, named variants, outputs, coordinates, environment.

Plain data, importable without torch, so ``harness list`` and reports can show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NAME = "lens"
VERSION = "1"
DESCRIPTION = "LENS (hustvl/LENS, Qwen2.5-VL-3B + SAM2-L): box answer by generation, mask from 64 learnable queries"
UPSTREAM = {"repo": "hustvl/LENS", "revision": "28cf510", "env": "HARNESS_LENS_REPO"}
OUTPUTS = ("mask", "box", "text", "reasoning")
BOX_SPACE = "pixel"  # the adapter rescales from the LLM image's pixels to the original's

CHECKPOINTS = {
    "OuyBin/LENS": "RefCOCO/+/g model (eval.sh RES run, prompt pr1_grounding)",
    "OuyBin/LENS_ReasonSeg_FT": "ReasonSeg fine-tuned, non-CoT (ReasonSeg test, prompt pr1_grounding)",
    "OuyBin/LENS_ReasonSeg_CoT": "ReasonSeg chain of thought (ReasonSeg val with --cot, prompt samr1_v4)",
}


@dataclass(frozen=True)
class Variant:
    """A named upstream protocol: checkpoint, prompt template, preprocessing, generation budget."""

    checkpoint: str
    template: str
    preprocessing: str
    max_length: int | None = 768
    max_new_tokens: int | None = None
    source: str = ""
    protocol: dict[str, Any] = field(default_factory=dict)  # batching, padding side and savings, where not the defaults

    def settings(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "template": self.template, "preprocessing": self.preprocessing,
                "max_length": self.max_length, "max_new_tokens": self.max_new_tokens, **self.protocol}


# evaluate_res2.py as it runs: one call per ref, the checkpoint's padding side, every sentence's
# image encoded and its prompt run in full in both passes (the reproduction setting)
UPSTREAM_PROTOCOL = {"batching": "ref", "padding_side": "tokenizer", "reuse_sam_embedding": False, "share_vision": False,
                     "share_prefix": False}


VARIANTS: dict[str, Variant] = {
    "refcoco": Variant("OuyBin/LENS", "pr1_grounding", "refcoco", source="eval/evaluate_res2.py (eval.sh RefCOCO run)"),
    "refcoco-demo": Variant("OuyBin/LENS", "pr1_grounding", "refcoco", max_length=None, max_new_tokens=256,
                            source="demo.py (max_new_tokens=256 instead of max_length=768)"),
    "refcoco-upstream": Variant("OuyBin/LENS", "pr1_grounding", "refcoco", protocol=UPSTREAM_PROTOCOL,
                                source="eval/evaluate_res2.py exactly: per ref, checkpoint's padding side, no sharing"),
    "reasonseg-cot": Variant("OuyBin/LENS_ReasonSeg_CoT", "samr1_v4", "reasonseg",
                             source="eval/evaluate_reasonseg.py --cot (ReasonSeg val)"),
    "reasonseg-ft": Variant("OuyBin/LENS_ReasonSeg_FT", "pr1_grounding", "reasonseg",
                            source="eval/evaluate_reasonseg.py without --cot (ReasonSeg test)"),
}
DEFAULT_VARIANT = "refcoco"

# What `harness setup lens` downloads and `harness doctor lens` looks for, per variant: the checkpoint
# holds the whole model (Qwen2.5-VL-3B, SAM2-L and the queries).
WEIGHTS: dict[str, tuple[str, ...]] = {name: (v.checkpoint,) for name, v in VARIANTS.items()}
# GPU memory a batch of 8 needs, in GB: an estimate, not a measurement (harness doctor compares free memory with it).
MEMORY_GB: dict[str, float] = {name: 14.0 for name in VARIANTS}
DTYPE = "bfloat16"  # on CUDA (model.resolve_dtype); float32 on CPU
MEMORY_SOURCE = ("estimate: the ~9 GB bf16 checkpoint (Qwen2.5-VL-3B 3.8B + SAM2-L 0.22B parameters x 2 bytes) plus ~5 GB "
                 "for activations, the KV cache of 768 tokens and SAM2's image features at batch 8; not measured")

# The environment the adapter is tested in (requirements.txt holds the same pins).
PINS = {
    "transformers": "4.51.3",
    "qwen_vl_utils": "0.0.11",
    "hydra-core": "1.3.2",
    "omegaconf": "2.3.0",
    "numpy": "2.3.2",
    "pycocotools": "2.0.8",
    "opencv-python-headless": "4.11.0.86",
    "torch": "2.13.0 (CPU tests); GPU: a CUDA build >= 2.5 (upstream implies 2.5.1), flash-attn 2.7.0.post2 optional",
}


def manifest() -> dict[str, Any]:
    """Everything above as one JSON-able dict."""
    return {
        "name": NAME, "version": VERSION, "description": DESCRIPTION, "upstream": UPSTREAM,
        "outputs": list(OUTPUTS), "box_space": BOX_SPACE, "checkpoints": CHECKPOINTS,
        "variants": {k: {**v.settings(), "source": v.source} for k, v in VARIANTS.items()},
        "default_variant": DEFAULT_VARIANT, "pins": PINS,
    }
