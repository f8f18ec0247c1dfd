"""Cumulative work counters behind ``Adapter.stats``, and the peak GPU memory beside them.

Two shapes are in use: a dataclass of integer counters (``WorkCounters`` or a subclass adding
fields), reported with ``stats``, and a plain ``dict[str, float]`` whose ``peak_gpu_memory_mb``
entry ``update_peak_gpu_memory_mb`` keeps at its maximum. torch is imported only on a GPU device.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class WorkCounters:
    """Cumulative work done, for ``Adapter.stats``."""

    segmenter_images: int = 0  # images through SAM's image encoder
    generated_tokens: int = 0  # new tokens, summed over sentences
    forward_passes: int = 0  # calls of the language model's forward


def stats(counters: Any, device: Any) -> dict[str, float]:
    """Every field of a counters dataclass as a float, in field order, and on a CUDA device the
    peak memory torch allocated there (``peak_gpu_memory_bytes``)."""
    out = {f.name: float(getattr(counters, f.name)) for f in fields(counters)}
    if str(device).startswith("cuda"):
        import torch

        out["peak_gpu_memory_bytes"] = float(torch.cuda.max_memory_allocated(device))
    return out


def update_peak_gpu_memory_mb(counters: dict[str, float], device: str, key: str = "peak_gpu_memory_mb") -> None:
    """Raise ``counters[key]`` to the peak memory torch allocated on a CUDA ``device`` (MiB), if higher."""
    if not device.startswith("cuda"):
        return
    import torch

    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
        counters[key] = max(counters[key], float(peak))
