"""UniPixel (PolyU-ChenLab/UniPixel) as a harness adapter: ``harness_unipixel.adapter.UniPixelAdapter``."""

from __future__ import annotations

__version__ = "0.1.0"
