"""GLaMM's two image branches, as ``dataset/segm_datasets/RefCOCO_Segm_ds.py ReferSegmDataset``
prepares them (mbzuai-oryx/groundingLMM e74865f, ``__getitem__`` and ``grounding_enc_processor``):
``harness.modelkit.llava_sam`` (shared with LISA) with CLIP at 336.

CLIP: ``CLIPImageProcessor.from_pretrained("openai/clip-vit-large-patch14-336")``, called on the
uint8 array (shortest side 336, centre crop 336x336). SAM: ``model/SAM/utils/transforms.py
ResizeLongestSide(1024).apply_image`` and ``grounding_enc_processor``.
"""

from __future__ import annotations

import numpy as np
from harness.modelkit import llava_sam
from harness.modelkit.llava_sam import SAM_PIXEL_MEAN, SAM_PIXEL_STD, Preprocessed, clip_resize_shape  # noqa: F401  (API)

CLIP_SIZE = 336  # openai/clip-vit-large-patch14-336: shortest_edge 336, crop 336


def clip_preprocess(image: np.ndarray, size: int = CLIP_SIZE) -> np.ndarray:
    return llava_sam.clip_preprocess(image, size)


def preprocess(image: np.ndarray, clip_size: int = CLIP_SIZE) -> Preprocessed:
    return llava_sam.preprocess(image, clip_size)
