"""From SAM's low-resolution logits to a binary mask at the original resolution.

Upstream (``src/open_r1/trainer/samr1.py postprocess_masks`` and the callers in
``eval/evaluate_res2.py``): ``F.interpolate(masks.float(), orig_hw, mode="bilinear",
align_corners=False)`` on the (1, 1, 256, 256) logits, then ``> 0``. There is no crop:
the SAM input was squashed, not padded, so the whole 256x256 map covers the whole image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from harness import masks
from harness.types import RLE


def upsample_logits(low_res: torch.Tensor, original_hw: tuple[int, int]) -> torch.Tensor:
    """(..., 256, 256) logits of one mask -> (H, W) float32 logits, bilinear, align_corners=False."""
    x = low_res.float()
    while x.dim() < 4:
        x = x.unsqueeze(0)
    if x.shape[0] != 1 or x.shape[1] != 1:
        raise ValueError(f"expected the logits of one mask, got shape {tuple(low_res.shape)}")
    return F.interpolate(x, size=tuple(original_hw), mode="bilinear", align_corners=False)[0, 0]


def logits_to_mask(low_res: torch.Tensor, original_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: upsampled logits > 0."""
    return (upsample_logits(low_res, original_hw) > 0).cpu().numpy()


def logits_to_rle(low_res: torch.Tensor, original_hw: tuple[int, int]) -> RLE:
    return masks.encode(logits_to_mask(low_res, original_hw))
