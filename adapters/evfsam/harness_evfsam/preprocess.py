"""EVF-SAM's two image inputs, as its evaluation builds them (``utils/dataset.py ValDataset.__getitem__``).

From the decoded RGB uint8 array (upstream: ``cv2.imread`` then BGR -> RGB):

BEiT-3 (both heads)
    ``ToTensor`` ([0, 1] float), a bicubic resize to 224 x 224 without antialiasing, then mean/std 0.5.
    Upstream writes ``transforms.Resize((224, 224), interpolation=3, antialias=None)``: with the
    torchvision it was run with (0.15) and with today's, ``None`` means no antialiasing for a tensor.
    (Before 9d00853 the argument was absent, which today's torchvision would read as antialiasing:
    the torchvision 0.15 behaviour is what the published numbers were computed with.)
SAM (``sam_input``), normalised with SAM's pixel mean/std (0-255 scale), one of:
    ``longest-side-pad`` (SAM-H, both eras; ``inference.py sam_preprocess`` too): the longest side resized
    to 1024 by PIL's bilinear filter (``ResizeLongestSide``, sides rounded half up), then zero-padded at
    the bottom and right to 1024 x 1024; the region before padding is the ``resize`` shape that
    SAM's ``postprocess_masks`` crops back to.
    ``squash`` (SAM-2, checkouts from 9d00853 on; ``Resize(1024)``): PIL bilinear straight to 1024 x 1024.
    ``longest-side-interpolate`` (SAM-2, checkouts before 9d00853): the longest side to 1024 by PIL, then
    the normalised tensor bilinearly interpolated (``align_corners=False``) to 1024 x 1024.

``inference.py`` squashes a SAM-2 input differently again (``F.interpolate`` on the uint8 tensor);
that path is not the evaluation's and is not reproduced. The functions here are written from the
behaviour; the tests compare them with upstream's own ``ValDataset`` and ``inference.py`` functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BEIT_SIZE = 224
SAM_SIZE = 1024
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
BEIT_MEAN = BEIT_STD = (0.5, 0.5, 0.5)
SAM_INPUTS = ("longest-side-pad", "squash", "longest-side-interpolate")


def sam_input_for(model_type: str, era: str | None) -> str:
    """The SAM input a checkout's ``ValDataset`` builds for ``model_type`` ("ori" or "sam2") in its era
    ("original" or "multitask"; SAM-H's is the same in both)."""
    if model_type == "ori":
        return "longest-side-pad"
    if model_type == "sam2":
        if era not in ("original", "multitask"):
            raise ValueError(f"SAM-2's input depends on the checkout's era (original or multitask), got {era!r}")
        return "squash" if era == "multitask" else "longest-side-interpolate"
    raise ValueError(f"unknown EVF-SAM model_type {model_type!r}; known: ori, sam2")


@dataclass(frozen=True)
class Prepared:
    """One image's inputs: BEiT-3's (3, 224, 224) and SAM's (3, 1024, 1024) float32 tensors, the SAM
    image region before padding (h, w) and the original (h, w)."""

    beit: Any
    sam: Any
    resize: tuple[int, int]
    original: tuple[int, int]


def longest_side_shape(height: int, width: int, target: int = SAM_SIZE) -> tuple[int, int]:
    """(h, w) with the longest side at ``target``, each side rounded half up (``int(x + 0.5)``)."""
    scale = target * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def pil_bilinear(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``shape`` (h, w) by PIL's bilinear filter (PIL filters with support when shrinking)."""
    from PIL import Image

    return np.array(Image.fromarray(image, mode="RGB").resize((shape[1], shape[0]), Image.BILINEAR))


def _sam_normalise(resized: np.ndarray) -> Any:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).contiguous()
    mean = torch.tensor(SAM_PIXEL_MEAN, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD, dtype=torch.float32).view(-1, 1, 1)
    return (x - mean) / std


def sam_pixels(image: np.ndarray, sam_input: str) -> tuple[Any, tuple[int, int]]:
    """SAM's (3, 1024, 1024) float32 input and the image region before padding (h, w)."""
    import torch.nn.functional as F

    h, w = image.shape[:2]
    if sam_input == "squash":
        return _sam_normalise(pil_bilinear(image, (SAM_SIZE, SAM_SIZE))), (SAM_SIZE, SAM_SIZE)
    shape = longest_side_shape(h, w)
    x = _sam_normalise(pil_bilinear(image, shape))
    if sam_input == "longest-side-pad":
        return F.pad(x, (0, SAM_SIZE - shape[1], 0, SAM_SIZE - shape[0])), shape
    if sam_input == "longest-side-interpolate":
        return F.interpolate(x.unsqueeze(0), (SAM_SIZE, SAM_SIZE), mode="bilinear", align_corners=False).squeeze(0), shape
    raise ValueError(f"unknown SAM input {sam_input!r}; known: {', '.join(SAM_INPUTS)}")


def beit_pixels(image: np.ndarray, size: int = BEIT_SIZE) -> Any:
    """BEiT-3's (3, size, size) float32 input: [0, 1], bicubic without antialiasing, mean/std 0.5."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    x = TF.to_tensor(np.ascontiguousarray(image))
    x = TF.resize(x, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=False)
    return TF.normalize(x, mean=BEIT_MEAN, std=BEIT_STD)


def prepare(image: np.ndarray, sam_input: str, beit_size: int = BEIT_SIZE) -> Prepared:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    sam, resize = sam_pixels(image, sam_input)
    return Prepared(beit=beit_pixels(image, beit_size), sam=sam, resize=resize,
                    original=(int(image.shape[0]), int(image.shape[1])))
