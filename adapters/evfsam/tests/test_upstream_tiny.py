"""The adapter against upstream's evaluation path end to end, on tiny random EVF-SAMs of both heads.

Upstream's side (``upstream_eval``): a RefCOCO tree written to disk, the checkout's ``ValDataset`` and
``collate_fn``, the model loaded as ``eval.py`` loads it and its own ``forward(inference=True)``, ``> 0``.
The adapter's side: its ``load`` on the same checkpoint and ``predict`` on the decoded images with the
sentences as a suite stores them. The masks must be equal pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from harness import masks
from harness.modelkit.testing import test_device
from tiny import ARCHITECTURE
from upstream_eval import collate, eval_masks, load_as_eval, queries, val_dataset, write_refcoco

from harness_evfsam.adapter import EvfSamAdapter

pytestmark = pytest.mark.slow

IMAGES = [(90, 130), (140, 100)]
SENTENCES = [[["The Man on the LEFT ", "a red car", "zebra top left"], ["the bigger elephant"]],
             [["Two dogs on the grass"], ["left umbrella", "a pizza with a yellow sign on top of it"]]]


def adapter_for(checkpoint: Path, model_type: str) -> EvfSamAdapter:
    adapter = EvfSamAdapter(checkpoint=str(checkpoint), model_type=model_type, architecture=ARCHITECTURE[model_type])
    adapter.load(test_device())
    return adapter


@pytest.mark.parametrize("model_type", ["ori", "sam2"])
def test_masks_equal_upstreams_eval_path(request: pytest.FixtureRequest, evfsam_repo: Path, tmp_path: Path,
                                         model_type: str) -> None:
    checkpoint = request.getfixturevalue(f"tiny_{model_type}")
    images = [make_image(*shape, seed=10 + i) for i, shape in enumerate(IMAGES)]
    dataset = val_dataset(evfsam_repo, write_refcoco(tmp_path, images, SENTENCES), model_type)
    model, tokenizer = load_as_eval(evfsam_repo, checkpoint, model_type, ARCHITECTURE[model_type])
    adapter = adapter_for(checkpoint, model_type)
    for k, image in enumerate(images):
        (expected,) = eval_masks(model, collate(evfsam_repo, [dataset[k]], tokenizer))
        preds = adapter.predict(image, queries(SENTENCES[k]))
        got = np.stack([masks.decode(p.mask) for p in preds])
        assert got.shape == expected.shape == (len(preds), *image.shape[:2])
        assert np.array_equal(got, expected)
        assert 0.01 < float(got.mean()) < 0.99  # a random model that still draws something, not nothing or everything
        assert all(p.error is None and p.text is None for p in preds)
    assert adapter.stats()["images_encoded_by_segmenter"] == len(images)
    assert adapter.stats()["sentences"] == sum(len(s) for refs in SENTENCES for s in refs)


def test_the_sentences_case_reaches_the_model(tiny_ori: Path) -> None:
    """For REFER data the sentence is lower-cased (ValDataset); for other data it is not, and the tokens differ."""
    adapter = EvfSamAdapter(checkpoint=str(tiny_ori), model_type="ori")
    image = make_image(60, 80)
    (refer,) = queries([["The Man on the LEFT "]])
    (other,) = queries([["The Man on the LEFT "]], dataset="reasonseg")
    assert adapter.inputs(image, refer)["prompt"] == "the man on the left"
    assert adapter.inputs(image, other)["input_ids"] != adapter.inputs(image, refer)["input_ids"]
