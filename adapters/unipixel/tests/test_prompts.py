"""UniPixel's question for each sentence shape, hand-worked from infer_seg.py (upstream's own dataset is
compared in test_upstream_tiny.py)."""

from __future__ import annotations

import pytest

from harness_unipixel.prompts import normalise_query, question

CASES = [
    ("The red car.", "red car"),
    ("the red car", "red car"),
    ("a man on the left", "man on the left"),
    ("A man on the left.", "man on the left"),
    ("an apple", "apple"),
    ("An umbrella", "umbrella"),
    ("the a dog", "dog"),  # "the " then "a "
    ("an the dog", "the dog"),  # "an " comes after "the ": checked once each, in order
    ("a the dog", "the dog"),
    ("then the dog", "then the dog"),  # no space after "the"
    ("another person", "another person"),
    ("The Red Car", "Red Car"),  # only the first character is lowered
    ("...man...", "man"),  # dots go at both ends
    ("man in red. ", "man in red. "),  # a space protects the dot; spaces are kept
    ("Theo", "theo"),
    ("left guy", "left guy"),
    ("a", "a"),  # "a" has no space after it
    ("the ", ""),
]


@pytest.mark.parametrize(("expression", "expected"), CASES)
def test_normalise_query(expression: str, expected: str) -> None:
    assert normalise_query(expression) == expected


def test_question_phrase_and_sentence() -> None:
    assert question("The red car.") == "Please segment the red car in this image."
    assert question("What can hold water?", is_sentence=True) == "What can hold water? Please provide the segmentation mask."
    assert question("the cup", is_sentence=False) == "Please segment the cup in this image."


@pytest.mark.parametrize("expression", ["", ".", "..."])
def test_empty_expression_raises(expression: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        normalise_query(expression)
