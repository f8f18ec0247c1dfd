"""Sa2VA (bytedance/Sa2VA) as a harness adapter: ``harness_sa2va.adapter.Sa2VAAdapter``."""

from __future__ import annotations

__version__ = "0.1.0"
