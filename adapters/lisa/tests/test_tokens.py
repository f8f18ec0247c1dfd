"""The [SEG] id check and the image-token tokenisation."""

from __future__ import annotations

import pytest
from harness.modelkit import llava_sam as tokens
from harness.modelkit.testing import llama_like_tokenizer

from harness_lisa import prompts


def test_seg_id_of_a_right_tokenizer() -> None:
    tok = llama_like_tokenizer()
    assert tokens.special_token_id(tok, "[SEG]") == 32000
    assert tokens.special_token_id(tok, "<im_start>") == 32001


def test_missing_seg_token_fails_loudly() -> None:
    tok = llama_like_tokenizer(added=())
    with pytest.raises(tokens.TokenizerError, match=r"no usable \[SEG\].*unknown token"):
        tokens.special_token_id(tok, "[SEG]")


def test_seg_token_inside_base_vocabulary_fails_loudly() -> None:
    tok = llama_like_tokenizer(base_vocab=500)  # [SEG] gets id 500: not a LLaMA added token
    with pytest.raises(tokens.TokenizerError, match="below 32000"):
        tokens.special_token_id(tok, "[SEG]")


def test_image_placeholder_becomes_minus_200_with_one_bos() -> None:
    tok = llama_like_tokenizer()
    ids = tokens.tokenizer_image_token(prompts.eval_prompt("dog", "refcoco"), tok)
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert ids.count(tokens.IMAGE_TOKEN_INDEX) == 1
    start = ids.index(tokens.IMAGE_TOKEN_INDEX)
    assert ids[start - 1] == tok.convert_tokens_to_ids("<im_start>")
    assert ids[start + 1] == tok.convert_tokens_to_ids("<im_end>")
    assert ids.count(32000) == 1 and ids[-1] == tok.eos_token_id


def test_pad_right() -> None:
    ids, att = tokens.pad_right([[1, 5, 6], [1, 7]], pad_token_id=0)
    assert ids.tolist() == [[1, 5, 6], [1, 7, 0]]
    assert att.tolist() == [[True, True, True], [True, True, False]]


class _NoBos:
    """A tokenizer whose ids never start with BOS (upstream then keeps every chunk whole)."""

    bos_token_id = 1

    def __init__(self, tok) -> None:
        self.tok = tok

    def __call__(self, text):
        ids = self.tok(text).input_ids
        return type("Out", (), {"input_ids": ids[1:] if ids[:1] == [1] else ids})()


TOKEN_PROMPTS = ("<image>", "no image at all", "<image>\nleading", "trailing <image>", "a <image> b <image> c",
                 "<image><image>", "", " <image> ")


def test_matches_checkout_tokenizer_image_token(lisa_repo) -> None:
    """The rewritten ``tokenizer_image_token`` gives upstream's ids, with and without a leading BOS."""
    from harness_lisa.upstream import import_module

    mm_utils = import_module(lisa_repo, "model.llava.mm_utils")
    tok = llama_like_tokenizer()
    texts = (prompts.eval_prompt("a red car", "refcoco"), prompts.eval_prompt("x", "refcoco", answer=None),
             prompts.eval_prompt("What? <image>", "reasonseg", is_sentence=True), *TOKEN_PROMPTS)
    for t in (tok, _NoBos(tok)):
        for p in texts:
            assert tokens.tokenizer_image_token(p, t) == mm_utils.tokenizer_image_token(p, t), p
            assert tokens.tokenizer_image_token(p, t, image_token_index=-7) == mm_utils.tokenizer_image_token(
                p, t, image_token_index=-7), p
