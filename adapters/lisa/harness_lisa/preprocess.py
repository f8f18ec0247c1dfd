"""LISA's two image branches, as ``utils/dataset.py ValDataset`` and ``chat.py`` prepare them.

The image arrives as RGB (upstream: ``cv2.imread`` then ``cv2.COLOR_BGR2RGB``).

CLIP (``CLIPImageProcessor.from_pretrained("openai/clip-vit-large-patch14")`` in transformers
4.31, called on the uint8 array): resize so that the shortest side is 224 (the other side
``int(224 * long / short)``, truncated), PIL bicubic on uint8; centre crop 224x224 with
``top = (h - 224) // 2``, ``left = (w - 224) // 2``; ``x * (1/255)`` (float64, cast to float32);
``(x - mean) / std`` in float32 with OpenAI CLIP's mean and std. ``tests/test_preprocess.py``
checks this against the installed transformers' ``CLIPImageProcessor`` configured as that
checkpoint's ``preprocessor_config.json``.

SAM (``model/segment_anything/utils/transforms.py ResizeLongestSide(1024).apply_image`` and
``ValDataset.preprocess``): the longer side scaled to 1024 with ``int(x + 0.5)`` rounding of
both sides; ``torchvision.transforms.functional.resize`` of a PIL image, i.e. PIL bilinear on
uint8; ``(x - pixel_mean) / pixel_std`` in float32; zero padding at the bottom and right to
1024x1024. The resized (h, w) is what the mask post-processing crops back to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
SAM_SIZE = 1024
CLIP_SIZE = 224  # openai/clip-vit-large-patch14: shortest_edge 224, crop 224


def check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}")


def clip_resize_shape(height: int, width: int, shortest: int) -> tuple[int, int]:
    """transformers ``get_resize_output_image_size(size=shortest, default_to_square=False)``: (h, w)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest, int(shortest * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def clip_preprocess(image: np.ndarray, size: int = CLIP_SIZE) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (3, size, size) float32, as ``CLIPImageProcessor.preprocess``."""
    check_image(image)
    h, w = image.shape[:2]
    nh, nw = clip_resize_shape(h, w, size)
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BICUBIC))
    top, left = (nh - size) // 2, (nw - size) // 2
    crop = resized[top:top + size, left:left + size]
    x = (crop * (1 / 255)).astype(np.float32)  # uint8 * python float: float64, then float32 (transformers rescale)
    mean = np.asarray(OPENAI_CLIP_MEAN, dtype=np.float32)
    std = np.asarray(OPENAI_CLIP_STD, dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def sam_resize_shape(height: int, width: int, long_side: int = SAM_SIZE) -> tuple[int, int]:
    """``ResizeLongestSide.get_preprocess_shape``: (h, w) with the longer side ``long_side``."""
    scale = long_side * 1.0 / max(height, width)
    newh, neww = height * scale, width * scale
    return int(newh + 0.5), int(neww + 0.5)


def sam_resize(image: np.ndarray, long_side: int = SAM_SIZE) -> np.ndarray:
    """``ResizeLongestSide.apply_image``: ``torchvision...resize(to_pil_image(image), (h, w))`` = PIL bilinear."""
    nh, nw = sam_resize_shape(image.shape[0], image.shape[1], long_side)
    return np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR))


def sam_normalise_pad(resized: np.ndarray, size: int = SAM_SIZE) -> np.ndarray:
    """(h, w, 3) uint8 -> (3, size, size) float32: ``(x - mean) / std``, zero-padded bottom/right."""
    chw = np.ascontiguousarray(resized.transpose(2, 0, 1)).astype(np.float32)
    mean = np.asarray(SAM_PIXEL_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(SAM_PIXEL_STD, dtype=np.float32)[:, None, None]
    x = (chw - mean) / std
    out = np.zeros((3, size, size), dtype=np.float32)
    out[:, : x.shape[1], : x.shape[2]] = x
    return out


@dataclass(frozen=True)
class Preprocessed:
    clip_image: np.ndarray  # (3, clip, clip) float32
    sam_image: np.ndarray  # (3, 1024, 1024) float32
    resize_hw: tuple[int, int]  # the SAM input's unpadded size
    original_hw: tuple[int, int]


def preprocess(image: np.ndarray, clip_size: int = CLIP_SIZE) -> Preprocessed:
    check_image(image)
    resized = sam_resize(image)
    return Preprocessed(
        clip_image=clip_preprocess(image, clip_size),
        sam_image=sam_normalise_pad(resized),
        resize_hw=(int(resized.shape[0]), int(resized.shape[1])),
        original_hw=(int(image.shape[0]), int(image.shape[1])),
    )
