"""UniPixel's inputs for one image, as ``unipixel/eval/infer_seg.py`` (5c8e941) builds them.

Upstream loads the image as a one-frame video (``load_frames``) and hands it twice:

- to the language model through ``process_vision_info``: the frame is resized to
  ``smart_resize(h, w, factor=28, min_pixels=128*28*28, max_pixels=256*28*28*(16 // 1))`` with
  PIL's bicubic filter, then repeated to 2 frames (Qwen2.5-VL's temporal patch), at a sample rate
  of 2 fps; the checkpoint's processor, loaded with ``do_resize=False``, does not resize again;
- to SAM2 as the raw uint8 frame: ``/ 255``, resized to ``sam2_image_size`` squared by
  torchvision's antialiased bilinear resize on the float tensor, normalised with ImageNet's mean
  and std (``unipixel/utils/transforms.py get_sam2_transform``); ``frame_size`` is the original
  (h, w), at which SAM2's video predictor returns the mask.

These functions reproduce that from the decoded RGB array the harness gives (the tests compare them
with upstream's own ``EvalDataset`` bit for bit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

PATCH_FACTOR = 28  # Qwen2.5-VL: 14-pixel patches merged 2x2
MIN_PIXELS = 128 * 28 * 28  # infer_seg.py's video min_pixels
FRAME_PIXELS = 256 * 28 * 28  # infer_seg.py's video max_pixels per sampled frame
SAMPLE_FRAMES = 16  # infer_seg.py --sample_frames default: max_pixels = FRAME_PIXELS * (16 // frames)
TEMPORAL_FRAMES = 2  # a video is padded to a multiple of 2 frames by repeating its last
FPS = 2.0  # the sample rate process_vision_info reports for a list of frames
MAX_ASPECT = 200
HIERA_MEAN = (0.485, 0.456, 0.406)
HIERA_STD = (0.229, 0.224, 0.225)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's resize rule: each side a multiple of ``factor`` (rounded half to even), the area
    brought into [min_pixels, max_pixels] by one common scale, ceil-ed up or floor-ed down."""
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ValueError(f"aspect ratio of a {height}x{width} image is over {MAX_ASPECT}")
    h = max(factor, factor * round(height / factor))
    w = max(factor, factor * round(width / factor))
    if h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h, w = factor * math.ceil(height * scale / factor), factor * math.ceil(width * scale / factor)
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h, w = factor * math.floor(height / scale / factor), factor * math.floor(width / scale / factor)
    return h, w


def max_pixels(sample_frames: int = SAMPLE_FRAMES, frames: int = 1) -> int:
    return FRAME_PIXELS * int(sample_frames / frames)


@dataclass(frozen=True)
class Preprocessed:
    """One image's inputs: the language model's video frames (PIL, resized), SAM2's normalised frame
    tensor (1, 3, S, S) float32, and the original (h, w)."""

    llm_frames: list[Any]
    sam_frames: Any
    frame_size: tuple[int, int]


def llm_frames(image: np.ndarray, sample_frames: int = SAMPLE_FRAMES) -> list[Any]:
    """The frames the language model sees: the image resized (bicubic), repeated to 2 frames."""
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    h, w = smart_resize(pil.height, pil.width, PATCH_FACTOR, MIN_PIXELS, max_pixels(sample_frames))
    resized = pil.resize((w, h), resample=Image.Resampling.BICUBIC)
    return [resized] * TEMPORAL_FRAMES


def sam_frames(image: np.ndarray, size: int) -> Any:
    """SAM2's input: (1, 3, size, size) float32, bilinear antialiased resize of the [0, 1] image, normalised."""
    import torch
    from torchvision.transforms import functional as TF

    video = torch.from_numpy(np.array(image, copy=True))[None]  # (1, H, W, 3) uint8, one frame (a writable copy)
    video = video.float().permute(0, 3, 1, 2) / 255
    video = TF.resize(video, [size, size], antialias=True)
    mean = video.new_tensor(HIERA_MEAN)[None, :, None, None]
    std = video.new_tensor(HIERA_STD)[None, :, None, None]
    return (video - mean) / std


def preprocess(image: np.ndarray, sam_size: int, sample_frames: int = SAMPLE_FRAMES) -> Preprocessed:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return Preprocessed(llm_frames(image, sample_frames), sam_frames(image, sam_size),
                        (int(image.shape[0]), int(image.shape[1])))
