"""Reference points every leaderboard needs: nothing, everything, and a perfect box.

They bound what a model's numbers mean on a suite: ``empty`` scores only no-target samples,
``full`` shows how much of each image the targets cover, ``oracle-box`` is the ceiling of a
model that finds the right object but only outputs its box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.types import Prediction, Sample


class EmptyAdapter(Adapter):
    info = AdapterInfo(name="empty", description="predicts an empty mask for every sample")

    def predict(self, image: np.ndarray, samples: Sequence[Sample]) -> list[Prediction]:
        h, w = image.shape[:2]
        return [Prediction(mask=masks.empty(h, w)) for _ in samples]


class FullAdapter(Adapter):
    info = AdapterInfo(name="full", description="predicts the whole image for every sample", outputs=("mask", "box"))

    def predict(self, image: np.ndarray, samples: Sequence[Sample]) -> list[Prediction]:
        h, w = image.shape[:2]
        mask = masks.full(h, w)
        return [Prediction(mask=mask, box=(0.0, 0.0, float(w), float(h))) for _ in samples]


class OracleBoxAdapter(Adapter):
    info = AdapterInfo(name="oracle-box", description="mask = the ground-truth box (an oracle, not a model)", outputs=("mask", "box"))

    def predict(self, image: np.ndarray, samples: Sequence[Sample]) -> list[Prediction]:
        h, w = image.shape[:2]
        out = []
        for s in samples:
            if s.gt.box is None:
                out.append(Prediction(mask=masks.empty(h, w)))
            else:
                out.append(Prediction(mask=masks.box_mask(s.gt.box, h, w), box=s.gt.box))
        return out
