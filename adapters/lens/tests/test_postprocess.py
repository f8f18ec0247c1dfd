"""256x256 logits -> bilinear (align_corners=False) to the original size -> > 0 -> RLE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness import masks

from harness_lens.postprocess import logits_to_mask, logits_to_rle, upsample_logits


def test_left_half_positive() -> None:
    logits = torch.full((1, 1, 256, 256), -5.0)
    logits[..., :, :128] = 5.0
    mask = logits_to_mask(logits, (480, 640))
    assert mask.shape == (480, 640) and mask.dtype == bool
    # the zero crossing is halfway between low-res columns 127 and 128 -> original x = 320
    assert mask[:, :320].all() and not mask[:, 320:].any()


def test_hand_made_2x2_upsampling() -> None:
    # align_corners=False: output pixel centres map to (x + 0.5) * in / out - 0.5, clamped at the border
    logits = torch.tensor([[[[-1.0, 3.0], [1.0, -3.0]]]])
    up = upsample_logits(logits, (4, 4))
    expected = torch.tensor([
        [-1.0, 0.0, 2.0, 3.0],
        [-0.5, 0.0, 1.0, 1.5],  # y=1 -> source row 0.25: 0.75 * row0 + 0.25 * row1
        [0.5, 0.0, -1.0, -1.5],
        [1.0, 0.0, -2.0, -3.0],
    ])
    assert torch.allclose(up, expected)
    # > 0, strictly: the zeros are background
    assert np.array_equal(logits_to_mask(logits, (4, 4)), (expected > 0).numpy())


def test_rle_roundtrip_and_original_size() -> None:
    logits = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    rle = logits_to_rle(logits, (37, 53))
    assert rle["size"] == [37, 53]
    assert np.array_equal(masks.decode(rle), logits_to_mask(logits, (37, 53)))


def test_bf16_logits_are_upsampled_in_float32() -> None:
    logits = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    up = upsample_logits(logits, (100, 120))
    assert up.dtype == torch.float32
    assert torch.equal(up, torch.nn.functional.interpolate(logits.float(), (100, 120), mode="bilinear", align_corners=False)[0, 0])


def test_rejects_several_masks() -> None:
    with pytest.raises(ValueError, match="one mask"):
        upsample_logits(torch.zeros(2, 1, 256, 256), (10, 10))
