"""CLIP-336 and SAM preprocessing, mask post-processing and the [SEG] check (the LISA adapter's
tests cover the shared code in more cases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness.modelkit import llava_sam as tokens
from harness.modelkit.llava_sam import logits_to_mask
from harness.modelkit.testing import llama_like_tokenizer, openai_clip_processor

from harness_glamm import preprocess as pp
from harness_glamm import prompts


@pytest.mark.parametrize("hw", [(5, 9), (480, 640), (336, 337)])
def test_clip_336_matches_transformers_processor(hw) -> None:
    image = np.random.default_rng(sum(hw)).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    ref = openai_clip_processor(336).preprocess(image, return_tensors="np")["pixel_values"][0]
    x = pp.clip_preprocess(image)
    assert x.shape == (3, 336, 336)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-6)


def test_clip_resize_shape_336() -> None:
    assert pp.clip_resize_shape(480, 640, 336) == (336, 448)


def test_sam_branch_by_hand() -> None:
    pre = pp.preprocess(np.full((3, 6, 3), 200, dtype=np.uint8))
    assert pre.resize_hw == (512, 1024) and pre.clip_image.shape == (3, 336, 336)
    np.testing.assert_allclose(pre.sam_image[:, 0, 0], (200 - np.array(pp.SAM_PIXEL_MEAN)) / np.array(pp.SAM_PIXEL_STD),
                               atol=1e-6)
    assert not pre.sam_image[:, 512:].any()


def test_mask_back_to_original_size() -> None:
    low = torch.full((1, 256, 256), -1.0)
    low[:, :64, :] = 1.0  # top quarter of the 1024 canvas = top half of a 512-high resized image
    m = logits_to_mask(low, (512, 1024), (40, 80))
    assert m.shape == (40, 80) and m[:20].all() and not m[20:].any()


def test_seg_id_checked() -> None:
    tok = llama_like_tokenizer(added=(), special=("<im_start>", "<im_end>", "<bbox>", "<point>", "[SEG]", "<p>", "</p>"))
    assert tokens.special_token_id(tok, "[SEG]") == 32004  # GLaMM's order: im_start, im_end, bbox, point, [SEG]
    with pytest.raises(tokens.TokenizerError):
        tokens.special_token_id(llama_like_tokenizer(added=()), "[SEG]")


def test_prompt_tokens_have_one_image_and_one_seg() -> None:
    tok = llama_like_tokenizer(added=(), special=("<im_start>", "<im_end>", "<bbox>", "<point>", "[SEG]", "<p>", "</p>"))
    ids = tokens.tokenizer_image_token(prompts.deterministic_prompt("dog"), tok)
    assert ids.count(tokens.IMAGE_TOKEN_INDEX) == 1 and ids.count(32004) == 1


def test_tokenizer_image_token_matches_the_checkout(glamm_repo) -> None:
    """The engine's ``tokenizer_image_token`` (written from its behaviour) against GLaMM's ``mm_utils``."""
    from harness_glamm.upstream import import_module

    mm_utils = import_module(glamm_repo, "model.llava.mm_utils")
    tok = llama_like_tokenizer(added=(), special=("<im_start>", "<im_end>", "<bbox>", "<point>", "[SEG]", "<p>", "</p>"))
    texts = (prompts.deterministic_prompt("The dog"), prompts.conversation([("A?", "[SEG]."), ("B?", "Sure, [SEG].")]),
             "<image>", "no image", "a <image> b <image> c", "<image><image>", "")
    for text in texts:
        assert tokens.tokenizer_image_token(text, tok) == mm_utils.tokenizer_image_token(text, tok), text
