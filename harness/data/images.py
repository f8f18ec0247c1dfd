"""Image decoding, once per image, with errors that name the file.

``exif`` is the suite's image convention (``Conventions.exif``): ``ignore`` gives the pixels
in their stored order; ``apply`` turns them upright by the JPEG's EXIF Orientation tag, as
``cv2.imread`` does by default (LISA, GLaMM and LENS read ReasonSeg with it). The
header-only size follows the same convention: orientations 5-8 swap width and height.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from harness.errors import HarnessError


class ImageError(HarnessError):
    """An image that cannot be read: missing, truncated, corrupt or not an image."""


ORIENTATION_TAG = 0x0112
SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that transpose the image (a 90 or 270 degree turn)
EXIF_CHOICES = ("apply", "ignore")


def exif_orientation(im: Image.Image) -> int | None:
    """The EXIF Orientation tag of an opened image (1 = upright), None when it has none."""
    value = im.getexif().get(ORIENTATION_TAG)
    return int(value) if value else None


def image_size(path: str | Path, exif: str = "ignore") -> tuple[int, int]:
    """(height, width) from the file's header, without decoding the pixels (a worker decodes
    them); under ``exif="apply"`` the size of the upright image."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            width, height = im.size
            if exif == "apply" and exif_orientation(im) in SWAPS_SIDES:
                width, height = height, width
            return height, width
    except FileNotFoundError:
        raise ImageError(f"image {p} does not exist") from None
    except UnidentifiedImageError:
        raise ImageError(f"image {p} is not a readable image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image {p} is corrupt or truncated ({exc})") from exc


def load_image(path: str | Path, exif: str = "ignore") -> np.ndarray:
    """Decode an image to an (h, w, 3) uint8 RGB array; ``exif`` as in the module docstring."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()  # decode now so a truncated file fails here, not later
            if exif == "apply" and exif_orientation(im) not in (None, 1):  # cv2.imread's IMREAD_COLOR orientation
                return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"image {p} does not exist") from None
    except UnidentifiedImageError:
        raise ImageError(f"image {p} is not a readable image file") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports truncation and corruption as OSError
        raise ImageError(f"image {p} is corrupt or truncated ({exc})") from exc
