"""Sa2VA's question and answer rule by hand-worked values (upstream's own dataset and model in test_upstream_tiny.py)."""

from __future__ import annotations

import numpy as np
import pytest

from harness_sa2va import answer
from harness_sa2va.prompts import question


@pytest.mark.parametrize("sentence", ["The red car.", "a man on the left", "an apple", "the dog", "Zebra"])
def test_question_keeps_the_sentence(sentence: str) -> None:
    assert question(sentence) == f"<image>\n Please segment {sentence} in this image."


def test_reasoning_question() -> None:
    q = question("the dog", "reasoning")
    assert q.startswith("<image>\n Please segment the dog in this image. You should first think")
    assert q.endswith("<think> reasoning process here </think> <answer> segmentation here </answer>.")
    with pytest.raises(ValueError, match="unknown Sa2VA prompt"):
        question("x", "cot")


def _m(*cells: tuple[int, int]) -> np.ndarray:
    m = np.zeros((1, 3, 4), bool)
    for y, x in cells:
        m[0, y, x] = True
    return m


def test_union_of_masks_when_seg() -> None:
    got = answer.read("It is [SEG] and [SEG].<|im_end|>", [_m((0, 0)), _m((2, 3))])
    assert got.mask is not None and got.mask.shape == (3, 4) and got.mask.sum() == 2 and got.reason is None
    assert got.answer == "It is [SEG] and [SEG]." and got.reasoning is None


def test_no_mask_or_no_seg() -> None:
    assert answer.read("[SEG]", []).reason == "no mask drawn"
    got = answer.read("Sorry.<|end|>", [_m((0, 0))])  # masks but no [SEG] in the text: v2 stores None
    assert got.mask is None and got.reason == "the answer has no [SEG]"
    assert answer.read("<|im_end|>", []).mask is None


def test_think_and_answer_tags() -> None:
    got = answer.read("<think>the left one [SEG]</think> <answer>[SEG]</answer><|im_end|>", [_m((1, 1))])
    assert got.reasoning == "the left one [SEG]" and got.answer == "[SEG]" and got.mask is not None
