"""LISA's two image branches, as ``utils/dataset.py ValDataset`` and ``chat.py`` prepare them:
``harness.modelkit.llava_sam`` (shared with GLaMM) with CLIP at 224.

CLIP: ``CLIPImageProcessor.from_pretrained("openai/clip-vit-large-patch14")`` in transformers
4.31, called on the uint8 array (shortest side 224, centre crop 224x224). SAM:
``model/segment_anything/utils/transforms.py ResizeLongestSide(1024).apply_image`` and
``ValDataset.preprocess``. ``tests/test_preprocess.py`` checks both by hand and against the
installed transformers' ``CLIPImageProcessor`` configured as that checkpoint's
``preprocessor_config.json``.
"""

from __future__ import annotations

import numpy as np
from harness.modelkit import llava_sam
from harness.modelkit.llava_sam import (  # noqa: F401  (the shared steps, part of this module's API)
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    SAM_SIZE,
    Preprocessed,
    check_image,
    clip_resize_shape,
    sam_normalise_pad,
    sam_resize,
    sam_resize_shape,
)

CLIP_SIZE = 224  # openai/clip-vit-large-patch14: shortest_edge 224, crop 224


def clip_preprocess(image: np.ndarray, size: int = CLIP_SIZE) -> np.ndarray:
    return llava_sam.clip_preprocess(image, size)


def preprocess(image: np.ndarray, clip_size: int = CLIP_SIZE) -> Preprocessed:
    return llava_sam.preprocess(image, clip_size)
