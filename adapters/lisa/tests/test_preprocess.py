"""CLIP and SAM preprocessing on tiny images, against values computed by hand and against
transformers' CLIPImageProcessor configured as openai/clip-vit-large-patch14."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness_lisa import preprocess as pp


def test_clip_resize_shape_truncates_long_side() -> None:
    assert pp.clip_resize_shape(480, 640, 224) == (224, 298)  # int(224 * 640 / 480) = int(298.67)
    assert pp.clip_resize_shape(640, 480, 224) == (298, 224)
    assert pp.clip_resize_shape(100, 100, 224) == (224, 224)


def test_clip_uniform_image_normalised_by_hand() -> None:
    image = np.full((5, 9, 3), (255, 0, 128), dtype=np.uint8)
    x = pp.clip_preprocess(image)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    mean, std = np.array(pp.OPENAI_CLIP_MEAN), np.array(pp.OPENAI_CLIP_STD)
    expected = (np.array([255, 0, 128]) / 255 - mean) / std  # bicubic keeps a constant image constant
    np.testing.assert_allclose(x[:, 100, 100], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(x.reshape(3, -1).std(axis=1), 0, atol=1e-6)


def test_clip_centre_crop_by_hand() -> None:
    # 224 x 448 image: no resize (shortest side already 224); the crop keeps columns 112..335
    image = np.zeros((224, 448, 3), dtype=np.uint8)
    image[:, :, 0] = (np.arange(448) // 2).astype(np.uint8)[None, :]
    x = pp.clip_preprocess(image)
    col = x[0, 0, :] * pp.OPENAI_CLIP_STD[0] + pp.OPENAI_CLIP_MEAN[0]
    np.testing.assert_allclose(col * 255, (np.arange(112, 336) // 2), atol=1e-3)


@pytest.mark.parametrize("hw", [(5, 9), (300, 200), (224, 225), (37, 1000)])
def test_clip_matches_transformers_processor(hw) -> None:
    from harness.modelkit.testing import openai_clip_processor

    rng = np.random.default_rng(sum(hw))
    image = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    ref = openai_clip_processor(224).preprocess(image, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(pp.clip_preprocess(image), ref, rtol=0, atol=1e-6)


def test_sam_resize_shape_rounds_half_up() -> None:
    assert pp.sam_resize_shape(480, 640) == (768, 1024)
    assert pp.sam_resize_shape(3, 2) == (1024, 683)  # 682.67 -> 683
    assert pp.sam_resize_shape(1000, 1000) == (1024, 1024)


def test_sam_normalise_and_pad_by_hand() -> None:
    image = np.full((2, 4, 3), (123, 116, 103), dtype=np.uint8)
    pre = pp.preprocess(image)
    assert pre.resize_hw == (512, 1024) and pre.original_hw == (2, 4)
    x = pre.sam_image
    assert x.shape == (3, 1024, 1024) and x.dtype == np.float32
    expected = (np.array([123, 116, 103]) - np.array(pp.SAM_PIXEL_MEAN)) / np.array(pp.SAM_PIXEL_STD)
    np.testing.assert_allclose(x[:, 0, 0], expected, atol=1e-6)
    np.testing.assert_allclose(x[:, 511, 1023], expected, atol=1e-6)
    assert not x[:, 512:, :].any()  # bottom padding is zero (after normalisation)


def test_sam_resize_is_pil_bilinear() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(30, 20, 3), dtype=np.uint8)
    resized = pp.sam_resize(image)
    assert resized.shape == (1024, 683, 3)
    np.testing.assert_array_equal(resized, np.asarray(Image.fromarray(image).resize((683, 1024), Image.Resampling.BILINEAR)))


def test_rejects_non_rgb() -> None:
    with pytest.raises(ValueError):
        pp.preprocess(np.zeros((4, 4), dtype=np.uint8))
