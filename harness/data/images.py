"""Image decoding, once per image, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.errors import HarnessError


class ImageError(HarnessError):
    """An image that cannot be read: missing, truncated, corrupt or not an image."""


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding the pixels (a worker decodes them)."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            width, height = im.size
            return height, width
    except FileNotFoundError:
        raise ImageError(f"image {p} does not exist") from None
    except UnidentifiedImageError:
        raise ImageError(f"image {p} is not a readable image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image {p} is corrupt or truncated ({exc})") from exc


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image to an (h, w, 3) uint8 RGB array (EXIF orientation is not applied,
    as in the upstream loaders, which read with cv2 or PIL without transposing)."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()  # decode now so a truncated file fails here, not later
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"image {p} does not exist") from None
    except UnidentifiedImageError:
        raise ImageError(f"image {p} is not a readable image file") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports truncation and corruption as OSError
        raise ImageError(f"image {p} is corrupt or truncated ({exc})") from exc
