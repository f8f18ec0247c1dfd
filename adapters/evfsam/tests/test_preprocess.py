"""The two image inputs and the tokens against upstream's own functions (``inference.py``, ``utils/dataset.py``).

Hand-made images of several shapes (wide, tall, smaller and larger than the inputs); every tensor must be
equal to upstream's bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image
from upstream_eval import collate, queries, upstream_module, val_dataset, write_refcoco

from harness_evfsam import preprocess, text
from harness_evfsam.model import era_of

SHAPES = [(90, 130), (37, 53), (300, 200), (480, 640), (1100, 700)]


@pytest.mark.parametrize("shape", SHAPES)
def test_beit_input_is_inference_py_beit3_preprocess(evfsam_repo: Path, shape: tuple[int, int]) -> None:
    inference = upstream_module(evfsam_repo, "inference")
    image = make_image(*shape, seed=sum(shape))
    expected = inference.beit3_preprocess(image, 224)
    assert torch.equal(preprocess.beit_pixels(image), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_sam_h_input_is_inference_py_sam_preprocess(evfsam_repo: Path, shape: tuple[int, int]) -> None:
    inference = upstream_module(evfsam_repo, "inference")
    image = make_image(*shape, seed=sum(shape))
    expected, resize = inference.sam_preprocess(image, model_type="ori")
    ours, our_resize = preprocess.sam_pixels(image, "longest-side-pad")
    assert our_resize == tuple(resize)
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("model_type", ["ori", "sam2"])
def test_inputs_are_val_datasets(evfsam_repo: Path, tmp_path: Path, model_type: str) -> None:
    """``ValDataset.__getitem__`` of eval.py (for the head's transform) against ``preprocess.prepare`` with the
    checkout's SAM input; its sentences (lower-cased) and ``collate_fn``'s tokens against ``text``."""
    from tiny import save_tokenizer

    images = [make_image(*shape, seed=i) for i, shape in enumerate(SHAPES[:3])]
    sentences = [[["The Man on the LEFT ", "a red car"], ["zebra"]], [["Two dogs on the grass"]], [["woman in white shirt"]]]
    dataset = val_dataset(evfsam_repo, write_refcoco(tmp_path / "data", images, sentences), model_type)
    tokenizer = text.load_tokenizer(str(save_tokenizer(tmp_path)))
    sam_input = preprocess.sam_input_for(model_type, era_of(evfsam_repo))
    assert len(dataset) == len(images)
    for k, image in enumerate(images):
        _, sam, beit, _, label, resize, sents, _ = dataset[k]
        ours = preprocess.prepare(image, sam_input)
        assert torch.equal(ours.sam, sam) and torch.equal(ours.beit, beit)
        assert ours.resize == tuple(resize) and ours.original == tuple(label.shape)
        prompts = [text.prompt(q.expression, q.dataset) for q in queries(sentences[k])]
        assert prompts == sents
        batch = collate(evfsam_repo, [dataset[k]], tokenizer)
        input_ids, attention = text.token_ids(tokenizer, prompts)
        assert torch.equal(input_ids, batch["input_ids"]) and torch.equal(attention, batch["attention_masks"])


def test_the_checkouts_sam2_input_is_the_squash(evfsam_repo: Path) -> None:
    """The reference snapshot (9935dc5) is of the multitask era: its SAM-2 input is PIL's squash to 1024."""
    assert era_of(evfsam_repo) == "multitask"
    assert preprocess.sam_input_for("sam2", era_of(evfsam_repo)) == "squash"


def test_sam2_inputs_of_the_two_eras_differ() -> None:
    """Not the same function under two names: the original era resizes the longest side, then interpolates."""
    image = make_image(90, 130)
    squash, _ = preprocess.sam_pixels(image, "squash")
    interpolated, resize = preprocess.sam_pixels(image, "longest-side-interpolate")
    assert resize == (709, 1024) and squash.shape == interpolated.shape == (3, 1024, 1024)
    assert not torch.equal(squash, interpolated)


def test_sam_h_padding_is_zero_after_normalising() -> None:
    image = make_image(90, 130)
    x, (h, w) = preprocess.sam_pixels(image, "longest-side-pad")
    assert (h, w) == (709, 1024)
    assert torch.count_nonzero(x[:, h:, :]) == 0 and torch.count_nonzero(x[:, :h, :w]) > 0
    mean = torch.tensor(preprocess.SAM_PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(preprocess.SAM_PIXEL_STD).view(3, 1, 1)
    assert float((x[:, :h, :w] * std + mean).min()) >= -1e-3 and float((x[:, :h, :w] * std + mean).max()) <= 255 + 1e-3


def test_prepare_refuses_what_is_not_rgb_uint8() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        preprocess.prepare(np.zeros((4, 4), dtype=np.uint8), "squash")
    with pytest.raises(ValueError, match="unknown SAM input"):
        preprocess.sam_pixels(make_image(8, 8), "stretch")
    with pytest.raises(ValueError, match="era"):
        preprocess.sam_input_for("sam2", None)


def test_prompts_lower_case_refer_data_only() -> None:
    assert text.prompt("  The Man ", "refcoco+") == "the man"
    assert text.prompt("What Is He Holding?", "reasonseg") == "What Is He Holding?"
