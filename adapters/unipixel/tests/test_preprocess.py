"""Preprocessing by hand-worked values (upstream's own tensors are compared in test_upstream_tiny.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness_unipixel import preprocess


@pytest.mark.parametrize(("hw", "expected"), [
    ((480, 640), (476, 644)),  # within bounds: each side to the nearest multiple of 28
    ((427, 640), (420, 644)),
    ((48, 64), (280, 392)),  # under 128*28*28: scaled up, ceil to 28
    ((3000, 4000), (1540, 2044)),  # over 256*28*28*16: scaled down, floor to 28
    ((14, 14), (336, 336)),
])
def test_smart_resize(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    h, w = preprocess.smart_resize(*hw, 28, preprocess.MIN_PIXELS, preprocess.max_pixels())
    assert (h, w) == expected
    assert preprocess.MIN_PIXELS <= h * w <= preprocess.max_pixels()


def test_pixel_bounds() -> None:
    assert preprocess.MIN_PIXELS == 100352 and preprocess.max_pixels() == 3211264 == 256 * 28 * 28 * 16


def test_aspect_ratio_refused() -> None:
    with pytest.raises(ValueError, match="aspect"):
        preprocess.smart_resize(10, 2100, 28, preprocess.MIN_PIXELS, preprocess.max_pixels())


def test_preprocess_shapes_and_values() -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    image[..., 0] = 255
    pre = preprocess.preprocess(image, 64)
    assert pre.frame_size == (48, 64)
    assert len(pre.llm_frames) == 2 and pre.llm_frames[0] is pre.llm_frames[1]
    assert (pre.llm_frames[0].height, pre.llm_frames[0].width) == (280, 392)
    assert pre.sam_frames.shape == (1, 3, 64, 64) and pre.sam_frames.dtype == torch.float32
    red = (1 - 0.485) / 0.229
    assert torch.allclose(pre.sam_frames[0, 0], torch.full((64, 64), red))
    assert torch.allclose(pre.sam_frames[0, 1], torch.full((64, 64), -0.456 / 0.224))


def test_preprocess_refuses_non_rgb() -> None:
    with pytest.raises(ValueError, match="RGB"):
        preprocess.preprocess(np.zeros((4, 4), np.uint8), 64)
