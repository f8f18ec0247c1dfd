"""Several images in one upstream forward give the masks that one image per call gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from harness import masks
from harness.types import Query
from tiny import ARCHITECTURE

from harness_evfsam.adapter import EvfSamAdapter

pytestmark = pytest.mark.slow


def q(expression: str, i: int) -> Query:
    return Query(id=f"refcoco/unc/val/{i}", image="unused.png", expression=expression, dataset="refcoco", split="val")


@pytest.mark.parametrize("model_type", ["ori", "sam2"])
def test_predict_many_equals_one_image_at_a_time(request: pytest.FixtureRequest, model_type: str) -> None:
    checkpoint: Path = request.getfixturevalue(f"tiny_{model_type}")
    adapter = EvfSamAdapter(checkpoint=str(checkpoint), model_type=model_type, architecture=ARCHITECTURE[model_type])
    adapter.load("cpu")
    assert adapter.multi_image
    images = [make_image(90, 130, seed=1), make_image(120, 64, seed=2), make_image(50, 50, seed=3)]
    # sentences of different token lengths, so that the batch pads each image's further than its own call does
    items = [(images[0], [q("a red car", 0), q("the man on the left", 1)]),
             (images[1], []),
             (images[2], [q("a pizza with a yellow sign on top of it", 2)])]
    one = [adapter.predict(image, queries) if queries else [] for image, queries in items]
    for image in images:  # done ahead, as the engine's decode-ahead thread does
        adapter.prepare_image(image)
    together = adapter.predict_many(items)
    assert [[p.mask for p in preds] for preds in together] == [[p.mask for p in preds] for preds in one]
    assert [len(p) for p in together] == [2, 0, 1]
    drawn = [masks.decode(p.mask) for preds in together for p in preds]
    assert [d.shape for d in drawn] == [(90, 130), (90, 130), (50, 50)]
    stats = adapter.stats()
    assert stats["forward_calls"] == 3 and stats["images_encoded_by_segmenter"] == 4 and stats["sentences"] == 6


def test_prepared_images_are_used_and_dropped(tiny_ori: Path) -> None:
    adapter = EvfSamAdapter(checkpoint=str(tiny_ori), model_type="ori", architecture=ARCHITECTURE["ori"])
    adapter.load("cpu")
    image = make_image(40, 60, seed=4)
    adapter.prepare_image(image)
    assert len(adapter._ready) == 1
    without = adapter.predict(np.array(image), [q("zebra", 0)])  # another array object: prepared afresh
    with_prepared = adapter.predict(image, [q("zebra", 0)])
    assert with_prepared[0].mask == without[0].mask
