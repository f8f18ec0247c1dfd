"""From SAM's 256x256 logits to a mask and a box at the original resolution.

``model/SAM/modeling/sam.py Sam.postprocess_masks`` (the same code as LISA's):
``F.interpolate(masks.float(), (1024, 1024), bilinear, align_corners=False)``, crop to the
resized image's ``[:h, :w]`` (the rest was padding), ``F.interpolate(..., original_size,
bilinear, align_corners=False)``; ``eval/referring_seg/infer_and_evaluate.py`` then thresholds ``> 0``. The box is
the mask's tight box (``harness.masks.mask_box``; None for an empty mask).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from harness import masks
from harness.types import RLE, Box

SAM_SIZE = 1024


def postprocess_masks(low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                      img_size: int = SAM_SIZE) -> torch.Tensor:
    """(B, C, 256, 256) logits -> (B, C, H, W) float32 logits, as ``Sam.postprocess_masks``."""
    x = F.interpolate(low_res.float(), (img_size, img_size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    return F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)


def logits_to_mask(low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool mask of one (1, 256, 256) or (256, 256) logit map: upsampled logits > 0."""
    x = low_res
    while x.dim() < 4:
        x = x.unsqueeze(0)
    if x.shape[0] != 1 or x.shape[1] != 1:
        raise ValueError(f"expected the logits of one mask, got shape {tuple(low_res.shape)}")
    return (postprocess_masks(x, input_size, original_size)[0, 0] > 0).cpu().numpy()


def mask_and_box(mask: np.ndarray) -> tuple[RLE, Box | None]:
    rle = masks.encode(mask)
    return rle, masks.mask_box(rle)
