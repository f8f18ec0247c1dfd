"""Seg-Zero and VisionReasoner adapters for the harness (Qwen2.5-VL JSON boxes and points -> SAM2)."""

__version__ = "0.1.0"
