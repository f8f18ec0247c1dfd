"""Mask post-processing back to the original size, on hand-made logits."""

from __future__ import annotations

import numpy as np
import torch
from harness import masks
from harness.modelkit.llava_sam import logits_to_mask, mask_and_box, postprocess_masks


def test_left_half_positive_maps_to_left_half_of_resized_region() -> None:
    # original 100 x 200 (h x w): SAM input 512 x 1024, the padded bottom half is cropped away
    low = torch.full((1, 1, 256, 256), -5.0)
    low[..., :, :128] = 5.0
    mask = logits_to_mask(low, (512, 1024), (100, 200))
    assert mask.shape == (100, 200)
    assert mask[:, :100].all() and not mask[:, 100:].any()


def test_padding_is_cropped_before_resizing() -> None:
    # positive logits only in the padded bottom half: nothing survives the crop
    low = torch.full((1, 1, 256, 256), -5.0)
    low[..., 128:, :] = 5.0
    assert not logits_to_mask(low, (512, 1024), (100, 200)).any()


def test_postprocess_shapes_and_float32() -> None:
    out = postprocess_masks(torch.zeros(3, 1, 256, 256, dtype=torch.bfloat16), (1024, 683), (30, 20))
    assert out.shape == (3, 1, 30, 20) and out.dtype == torch.float32


def test_threshold_is_strictly_positive() -> None:
    assert not logits_to_mask(torch.zeros(256, 256), (1024, 1024), (8, 8)).any()


def test_box_from_mask() -> None:
    m = np.zeros((10, 20), dtype=bool)
    m[2:5, 3:9] = True
    rle, box = mask_and_box(m)
    assert box == (3.0, 2.0, 9.0, 5.0)
    assert masks.area(rle) == 18
    assert mask_and_box(np.zeros((4, 4), dtype=bool))[1] is None


def test_matches_checkout_sam_postprocess(lisa_repo) -> None:
    from harness_lisa.upstream import import_module

    bs = import_module(lisa_repo, "model.segment_anything.build_sam")
    from harness.modelkit.testing import tiny_sam

    sam = tiny_sam(bs)
    torch.manual_seed(1)
    low = torch.randn(2, 1, 256, 256)
    ours = postprocess_masks(low, (700, 1024), (350, 512))
    theirs = sam.postprocess_masks(low, input_size=(700, 1024), original_size=(350, 512))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
