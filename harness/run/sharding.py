"""Exact sharding: each rank owns a disjoint slice of a split, grouped by image; never padded.

LISA-lineage evaluators use ``DistributedSampler``, which pads the last shard with duplicate
samples and so changes the numbers with the world size. Here a split is cut into N
contiguous blocks of whole images, balanced by sample count; the union of the blocks is the
split, every sample exactly once. Each rank writes its own log
(``RUN/<model>/<split>.shard-<i>-of-<N>.jsonl``); the merge checks the union of ids against
the split before it writes the split's log.

A rank comes from ``--shard i/N`` (0-based, e.g. a Slurm array task id) or from torchrun's
``RANK`` / ``WORLD_SIZE`` environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.types import Sample

SPEC_HELP = ("a shard spec is i/N: this process takes part i of a split cut into N parts (N >= 1; i from 0 "
             "to N-1, 0-based, e.g. 0/4 ... 3/4 for four processes)")


class ShardError(HarnessError):
    """A malformed shard spec, or shards whose union is not the split."""


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ShardError(f"shard {self.index}/{self.count}: {SPEC_HELP}; there must be at least one shard")
        if not 0 <= self.index < self.count:
            raise ShardError(f"shard {self.index}/{self.count}: {SPEC_HELP}; the index must be in 0..{self.count - 1}")

    @property
    def suffix(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, samples: Sequence[Sample]) -> list[Sample]:
        """This shard's samples: whole image groups whose first sample falls in its block."""
        n = len(samples)
        lo, hi = self.index * n // self.count, (self.index + 1) * n // self.count
        first_of_image: dict[str, int] = {}
        for i, s in enumerate(samples):
            first_of_image.setdefault(s.image, i)
        return [s for s in samples if lo <= first_of_image[s.image] < hi]


def parse_shard(spec: str) -> Shard:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not m:
        raise ShardError(f"--shard {spec!r}: {SPEC_HELP}")
    try:
        return Shard(int(m.group(1)), int(m.group(2)))
    except ShardError as exc:
        raise ShardError(f"--{exc}") from None


def shard_from_env() -> Shard | None:
    """torchrun's rank and world size, when there is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return Shard(int(os.environ.get("RANK", "0")), world)

