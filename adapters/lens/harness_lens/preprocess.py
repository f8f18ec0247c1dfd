"""LENS's two image branches, as its evaluation scripts prepare them (hustvl/LENS 28cf510).

The language model sees a resized copy of the image (its box answer is in that copy's
pixels); SAM sees the image squashed to 1024x1024, normalised with SAM's pixel mean and std.
The two upstream protocols differ in both branches and are named here:

``refcoco`` (``eval/evaluate_res2.py`` ``ReferSegEvaluationSet.__getitem__``, ``demo.py preprocess``):
    LLM: ``qwen_vl_utils.smart_resize(h, w, 28, max_pixels=1000000)`` then
    ``image.resize((w', h'))`` (PIL's default filter for RGB: bicubic).
    SAM: ``torchvision.transforms.functional.resize(pil_image, (1024, 1024))``; on a PIL image
    torchvision calls ``PIL.Image.resize`` with BILINEAR (PIL's bilinear always antialiases
    when shrinking), on uint8, so the result is rounded to uint8 before normalising.
``reasonseg`` (``eval/evaluate_reasonseg.py`` ``ReasonSegVal.__getitem__``):
    LLM: ``resize_longest(image, 640)`` (scale the longer side to 640, ``int()`` truncation,
    PIL default bicubic). SAM: ``cv2.resize(rgb, (1024, 1024))`` (INTER_LINEAR, no antialias).

In both, SAM's input is ``(uint8 - mean) / std`` in float32 with mean [123.675, 116.28, 103.53]
and std [58.395, 57.12, 57.375]. ``smart_resize`` is re-implemented (``qwen_vl_utils`` imports
torchvision at import time, which a CPU-only torch build here cannot load); the tests check
it against the pinned ``qwen_vl_utils`` 0.0.11 on many sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

SAM_SIZE = 1024
SAM_PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
SAM_PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)

# qwen_vl_utils.vision_process constants (0.0.11)
IMAGE_FACTOR = 28
MIN_PIXELS = 4 * 28 * 28  # 3136
MAX_PIXELS_QWEN_DEFAULT = 16384 * 28 * 28
MAX_RATIO = 200
# LENS passes max_pixels=1000000 (evaluate_res2.py, demo.py)
LENS_MAX_PIXELS = 1_000_000
REASONSEG_LONGEST = 640


def _round_by_factor(number: float, factor: int) -> int:
    return round(number / factor) * factor


def _ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def _floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def smart_resize(height: int, width: int, factor: int = IMAGE_FACTOR, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS_QWEN_DEFAULT) -> tuple[int, int]:
    """(height, width) divisible by ``factor``, with min_pixels <= h*w <= max_pixels, aspect kept
    as closely as possible: ``qwen_vl_utils.smart_resize`` (0.0.11) line for line."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"absolute aspect ratio must be smaller than {MAX_RATIO}, got {max(height, width) / min(height, width)}")
    h_bar = max(factor, _round_by_factor(height, factor))
    w_bar = max(factor, _round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = _floor_by_factor(height / beta, factor)
        w_bar = _floor_by_factor(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by_factor(height * beta, factor)
        w_bar = _ceil_by_factor(width * beta, factor)
    return h_bar, w_bar


def resize_longest_size(height: int, width: int, longest: int = REASONSEG_LONGEST) -> tuple[int, int]:
    """(height, width) of upstream's ``resize_longest``: the longer side scaled to ``longest``,
    both sides truncated with ``int()`` (a square scales by its height)."""
    scale = longest / width if width > height else longest / height
    return int(height * scale), int(width * scale)


def llm_image_refcoco(image: Image.Image) -> Image.Image:
    width, height = image.size
    rh, rw = smart_resize(height, width, IMAGE_FACTOR, max_pixels=LENS_MAX_PIXELS)
    return image.resize((rw, rh), Image.Resampling.BICUBIC)


def llm_image_reasonseg(image: Image.Image) -> Image.Image:
    width, height = image.size
    rh, rw = resize_longest_size(height, width)
    return image.resize((rw, rh), Image.Resampling.BICUBIC)


def normalize_sam(resized: np.ndarray) -> np.ndarray:
    """(1024, 1024, 3) uint8 -> (3, 1024, 1024) float32 ``(x - mean) / std``."""
    chw = np.ascontiguousarray(resized.transpose(2, 0, 1)).astype(np.float32)
    return (chw - SAM_PIXEL_MEAN[:, None, None]) / SAM_PIXEL_STD[:, None, None]


def sam_resize_pil_bilinear(image: np.ndarray) -> np.ndarray:
    """The squash of ``torchvision...resize(pil_image, (1024, 1024))``: PIL bilinear on uint8."""
    return np.asarray(Image.fromarray(image).resize((SAM_SIZE, SAM_SIZE), Image.Resampling.BILINEAR))


def sam_resize_cv2_linear(image: np.ndarray) -> np.ndarray:
    """The squash of ``cv2.resize(rgb, (1024, 1024))``: INTER_LINEAR on uint8."""
    import cv2  # opencv-python-headless, pinned as upstream pins it

    return np.asarray(cv2.resize(np.ascontiguousarray(image), (SAM_SIZE, SAM_SIZE)))


@dataclass(frozen=True)
class Preprocessed:
    """One image made ready for both branches."""

    llm_image: Image.Image  # what the processor receives
    sam_image: np.ndarray  # (3, 1024, 1024) float32, normalised
    original_hw: tuple[int, int]


@dataclass(frozen=True)
class Preprocessing:
    """A named upstream protocol for both branches."""

    name: str
    llm: str  # "smart_resize_1e6" | "resize_longest_640"
    sam: str  # "pil_bilinear" | "cv2_linear"

    def llm_image(self, image: np.ndarray) -> Image.Image:
        pil = Image.fromarray(image)
        if self.llm == "smart_resize_1e6":
            return llm_image_refcoco(pil)
        if self.llm == "resize_longest_640":
            return llm_image_reasonseg(pil)
        raise ValueError(f"unknown LLM resize {self.llm!r}")

    def sam_image(self, image: np.ndarray) -> np.ndarray:
        if self.sam == "pil_bilinear":
            return normalize_sam(sam_resize_pil_bilinear(image))
        if self.sam == "cv2_linear":
            return normalize_sam(sam_resize_cv2_linear(image))
        raise ValueError(f"unknown SAM resize {self.sam!r}")

    def __call__(self, image: np.ndarray) -> Preprocessed:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"LENS expects an (h, w, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        return Preprocessed(self.llm_image(image), self.sam_image(image), (int(image.shape[0]), int(image.shape[1])))


PREPROCESSING: dict[str, Preprocessing] = {
    "refcoco": Preprocessing("refcoco", llm="smart_resize_1e6", sam="pil_bilinear"),
    "reasonseg": Preprocessing("reasonseg", llm="resize_longest_640", sam="cv2_linear"),
}
