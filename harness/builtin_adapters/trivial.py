"""Reference points every leaderboard needs: nothing, everything, and a perfect box.

They bound what a model's numbers mean on a suite: ``empty`` scores only no-target samples,
``full`` shows how much of each image the targets cover, ``oracle-box`` is the ceiling of a
model that finds the right object but only outputs its box. ``oracle-box`` is the one builtin
oracle (``AdapterInfo.oracle``): the runner gives it full Samples, in-process only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.types import Prediction, Query, Sample


class EmptyAdapter(Adapter):
    info = AdapterInfo(name="empty", description="predicts an empty mask for every sample", reference=True)
    model_thread = False  # a reference point: nothing to overlap (harness.adapter)

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        h, w = image.shape[:2]
        return [Prediction(mask=masks.empty(h, w)) for _ in queries]


class FullAdapter(Adapter):
    info = AdapterInfo(name="full", description="predicts the whole image for every sample", outputs=("mask", "box"),
                       reference=True)
    model_thread = False  # a reference point: nothing to overlap (harness.adapter)

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        h, w = image.shape[:2]
        mask = masks.full(h, w)
        return [Prediction(mask=mask, box=(0.0, 0.0, float(w), float(h))) for _ in queries]


class OracleBoxAdapter(Adapter):
    info = AdapterInfo(name="oracle-box", description="mask = the ground-truth box (an oracle, not a model)", outputs=("mask", "box"),
                       oracle=True, reference=True)
    model_thread = False

    # An oracle is given the Samples themselves (AdapterInfo.oracle), hence the narrower signature.
    def predict(self, image: np.ndarray, samples: Sequence[Sample]) -> list[Prediction]:  # type: ignore[override]
        h, w = image.shape[:2]
        out = []
        for s in samples:
            if s.gt.box is None:
                out.append(Prediction(mask=masks.empty(h, w)))
            else:
                out.append(Prediction(mask=masks.box_mask(s.gt.box, h, w), box=s.gt.box))
        return out
