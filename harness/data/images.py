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


# Pillow frees a decoded image's memory block with free() unless it may keep it: then the next
# image of the same size reuses it without touching the allocator. A decode and, for non-RGB
# files, its conversion are two blocks; a few more cover images of varied sizes. This is the
# setting Pillow reads from PILLOW_BLOCKS_MAX, applied in code so no environment is needed;
# a larger value someone chose is kept.
_DECODE_BLOCKS = 4


def _reuse_decode_buffers() -> None:
    if Image.core.get_blocks_max() < _DECODE_BLOCKS:
        Image.core.set_blocks_max(_DECODE_BLOCKS)


_reuse_decode_buffers()


ORIENTATION_TAG = 0x0112
SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that transpose the image (a 90 or 270 degree turn)
EXIF_CHOICES = ("apply", "ignore")


def exif_orientation(im: Image.Image) -> int | None:
    """The EXIF Orientation tag of an opened image (1 = upright), None when it has none."""
    value = im.getexif().get(ORIENTATION_TAG)
    return int(value) if value else None


def _open(p: Path) -> Image.Image:
    """Open (not decode) an image file; the ways it can fail, as ImageError naming the file."""
    try:
        return Image.open(p)
    except FileNotFoundError:
        raise ImageError(f"image {p} does not exist") from None
    except UnidentifiedImageError:
        raise ImageError(f"image {p} is not a readable image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image {p} is corrupt or truncated ({exc})") from exc


def header(path: str | Path, exif: str = "ignore", orientation: bool = False) -> tuple[int, int, int | None]:
    """(height, width, EXIF orientation) from the file's header, without decoding the pixels;
    under ``exif="apply"`` the size of the upright image. The orientation is read only under
    ``apply`` or when asked for (``orientation``; None otherwise): Pillow decodes a PNG's pixels
    to find its EXIF chunk."""
    p = Path(path)
    with _open(p) as im:
        try:
            width, height = im.size
            found = exif_orientation(im) if exif == "apply" or orientation else None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"image {p} is corrupt or truncated ({exc})") from exc
    if exif == "apply" and found in SWAPS_SIDES:
        width, height = height, width
    return height, width, found


def image_size(path: str | Path, exif: str = "ignore") -> tuple[int, int]:
    """(height, width) from the file's header, without decoding the pixels (a worker decodes
    them); under ``exif="apply"`` the size of the upright image."""
    height, width, _ = header(path, exif)
    return height, width


class Decoded:
    """An image decoded to RGB in Pillow's memory, not yet copied out as an array.

    The decode (the slow part, which releases the GIL) may run in a helper thread; ``array``
    runs where the pixels are used. That keeps the one fresh allocation per image, the array,
    in the thread that frees it: glibc gives each thread its own heap, and an array allocated
    in the decode thread but freed in the main one churned that heap (71 faults per image at
    100k samples against 7 when all ran in one thread).
    """

    def __init__(self, source: Image.Image, rgb: Image.Image) -> None:
        self._source, self._rgb = source, rgb

    def array(self) -> np.ndarray:
        """The (h, w, 3) uint8 pixels (a new array the caller owns); frees Pillow's copy."""
        try:
            return np.asarray(self._rgb)
        finally:
            # Pillow's block cache is a stack: give back the conversion's block before the
            # decode's, so the next image's decode and conversion each find their own size.
            if self._rgb is not self._source:
                self._rgb.close()
            self._source.close()


def decode(path: str | Path, exif: str = "ignore") -> Decoded:
    """Decode an image to RGB, ``exif`` as in the module docstring; ``.array()`` gives the pixels.

    Per image this allocates only the returned array: an RGB decode is packed straight into
    it (no ``convert("RGB")`` copy of an image that is RGB already), and Pillow's own storage
    for the decoded pixels comes from its block cache (see ``_reuse_decode_buffers``), so the
    same few megabytes serve every image instead of being handed back to the kernel and
    faulted in again (issue 15: ~1,000 minor faults per image once 76k samples were resident).
    """
    p = Path(path)
    im = _open(p)
    try:
        im.load()  # decode now so a truncated file fails here, not later
        if exif == "apply" and exif_orientation(im) not in (None, 1):  # cv2.imread's IMREAD_COLOR orientation
            return Decoded(im, ImageOps.exif_transpose(im).convert("RGB"))
        return Decoded(im, im if im.mode == "RGB" else im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports truncation and corruption as OSError
        im.close()
        raise ImageError(f"image {p} is corrupt or truncated ({exc})") from exc
    except BaseException:
        im.close()
        raise


def load_image(path: str | Path, exif: str = "ignore") -> np.ndarray:
    """Decode an image to an (h, w, 3) uint8 RGB array in one go (see ``decode``)."""
    return decode(path, exif).array()
