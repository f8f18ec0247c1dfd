"""What the EVF-SAM adapter is: model names, checkpoints, upstream, environment. Plain data, importable without torch.

hustvl/EVF-SAM publishes four checkpoints (README "Weights"). Its README note 1 says the ``-multitask``
ones run with commits from 9d00853 on and the others with commits before it. That commit changed two
things for the SAM-2 head (``model/evf_sam2.py``: the mask decoder's ``multimask_output`` False -> True,
best of three by predicted IoU; ``utils/dataset.py ValDataset``: the SAM-2 input) and nothing for the
SAM-H head's evaluation path (``model/evf_sam.py`` is unchanged; see ``preprocess``). So the SAM-2
checkpoints are tied to their era of the checkout, and the SAM-H ones run the same with either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAME = "evfsam"
VERSION = "1"
DESCRIPTION = "EVF-SAM (hustvl/EVF-SAM): BEiT-3 early fusion of image (224) and text, [CLS] prompts SAM-H or SAM-2-L; no LLM"
UPSTREAM = {"repo": "hustvl/EVF-SAM", "revision": "9935dc5", "env": "HARNESS_EVFSAM_REPO",
            "script": "eval.py (utils/dataset.py ValDataset, collate_fn; model/evf_sam.py, model/evf_sam2.py forward)"}
OUTPUTS = ("mask",)

# The commit that split the checkpoints (README note 1); a checkout from it on has this file (it added it).
MULTITASK_COMMIT = "9d00853"
MULTITASK_MARKER = "utils/ade20k_dataset.py"
ERAS = ("original", "multitask")  # before 9d00853, from 9d00853 on


@dataclass(frozen=True)
class Checkpoint:
    hub_id: str
    model_type: str  # upstream's --model_type: "ori" (SAM-H) or "sam2" (SAM-2-L)
    era: str | None  # the checkout era its forward needs; None: either gives the same computation
    note: str


MODELS: dict[str, Checkpoint] = {
    "evf-sam": Checkpoint("YxZhang/evf-sam", "ori", None,
                          "SAM-H + BEiT-3-L, 1.32B; README reference score 83.7"),
    "evf-sam2": Checkpoint("YxZhang/evf-sam2", "sam2", "original",
                           "SAM-2-L (frozen) + BEiT-3-L, 898M; README reference score 83.6; a checkout before 9d00853"),
    "evf-sam-multitask": Checkpoint("YxZhang/evf-sam-multitask", "ori", None,
                                    "SAM-H + BEiT-3-L, jointly trained on RES, semantic and part data; reference score 84.2"),
    "evf-sam2-multitask": Checkpoint("YxZhang/evf-sam2-multitask", "sam2", "multitask",
                                     "SAM-2-L + BEiT-3-L, multitask; reference score 83.2; a checkout from 9d00853 on"),
}
MODEL_TYPES = ("ori", "sam2")

# What `harness setup evfsam` downloads and `harness doctor evfsam` looks for, per model name.
DEFAULT_VARIANT = "evf-sam"
# What `harness setup` says beside the checkout it makes (UPSTREAM's revision serves every model but evf-sam2).
UPSTREAM_NOTE = ("evf-sam2 needs a checkout before 9d00853 as well: `git -C CHECKOUT worktree add CHECKOUT-781bee0 781bee0`, "
                 "then `options: {upstream_repo: CHECKOUT-781bee0}` (adapters/evfsam/README.md)")
WEIGHTS: dict[str, tuple[str, ...]] = {name: (c.hub_id,) for name, c in MODELS.items()}
DTYPE = "float16"  # on CUDA, as eval.py --precision fp16 (adapter.py); float32 on CPU
MEMORY_GB: dict[str, float] = {"evf-sam": 8.0, "evf-sam2": 6.0, "evf-sam-multitask": 8.0, "evf-sam2-multitask": 6.0}
MEMORY_SOURCE = ("estimate: parameters (1.32B SAM-H, 898M SAM-2 models) x 2 bytes (fp16) plus ~4 GB for SAM's 1024 "
                 "image features and BEiT-3 activations over a batch of images; not measured")

ENVIRONMENT = {
    "torch": "2.0.1 + torchvision 0.15.2 upstream (requirements.txt, commented); 2.13.0 CPU in the tests",
    "transformers": "unpinned upstream; 4.49.0 here (the release current at the snapshot 9935dc5)",
    "torchscale": "0.2.0 (upstream's pin; brings fairscale 0.4.0 and timm 0.4.12)",
    "pillow": "9.4.0 (upstream's pin; SAM's input resize is PIL's)",
    "python": ">=3.10 (tested: 3.11)",
}


def manifest() -> dict[str, Any]:
    return {"name": NAME, "version": VERSION, "description": DESCRIPTION, "upstream": dict(UPSTREAM),
            "outputs": list(OUTPUTS), "box_space": "pixel",
            "models": {name: {"checkpoint": c.hub_id, "model_type": c.model_type, "era": c.era, "note": c.note}
                       for name, c in MODELS.items()},
            "environment": dict(ENVIRONMENT)}
