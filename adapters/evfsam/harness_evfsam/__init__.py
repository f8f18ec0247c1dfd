"""EVF-SAM (hustvl/EVF-SAM) as a harness adapter: ``harness_evfsam.adapter.EvfSamAdapter``."""

from __future__ import annotations

__version__ = "0.1.0"
