"""Parsing of <think>/<answer> text: realistic outputs and the ways models break them."""

from __future__ import annotations

import pytest

from harness.answer import AnswerParseError, parse_bbox_answer, split_reasoning

SEG_ZERO = """<think>
The user asks for the red cup. I can see a red cup on the left side of the table,
next to a blue plate.
</think>
<answer>{"bbox_2d": [120, 45, 310, 260], "points_1": [200, 150]}</answer>"""


def test_split_reasoning_realistic() -> None:
    think, answer = split_reasoning(SEG_ZERO)
    assert think is not None and think.startswith("The user asks") and think.endswith("blue plate.")
    assert answer == '{"bbox_2d": [120, 45, 310, 260], "points_1": [200, 150]}'
    assert parse_bbox_answer(answer) == [(120.0, 45.0, 310.0, 260.0)]


def test_split_reasoning_missing_tags() -> None:
    assert split_reasoning("no tags at all") == (None, None)
    assert split_reasoning("") == (None, None)
    assert split_reasoning(None) == (None, None)
    assert split_reasoning("<think>only thinking</think>") == ("only thinking", None)
    assert split_reasoning('<answer> {"bbox_2d": []} </answer>') == (None, '{"bbox_2d": []}')
    assert split_reasoning("<think>unterminated <answer>[]") == (None, None)


def test_split_reasoning_first_pair_wins() -> None:
    _, answer = split_reasoning("<answer>[]</answer> then <answer>{}</answer>")
    assert answer == "[]"


def test_list_form_and_empty() -> None:
    text = '[{"bbox_2d": [10, 20, 30, 40], "point_2d": [20, 30]}, {"bbox_2d": [50.5, 60, 70, 80.25]}]'
    assert parse_bbox_answer(text) == [(10.0, 20.0, 30.0, 40.0), (50.5, 60.0, 70.0, 80.25)]
    assert parse_bbox_answer("[]") == []
    assert parse_bbox_answer('{"bbox_2d": []}') == []
    assert parse_bbox_answer('[{"bbox_2d": []}, {"bbox_2d": [1, 2, 3, 4]}]') == [(1.0, 2.0, 3.0, 4.0)]


def test_swapped_coordinates_are_ordered() -> None:
    assert parse_bbox_answer('{"bbox_2d": [300, 260, 120, 45]}') == [(120.0, 45.0, 300.0, 260.0)]
    assert parse_bbox_answer('{"bbox_2d": [10, 80, 40, 20]}') == [(10.0, 20.0, 40.0, 80.0)]


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        (None, "no <answer>"),
        ("", "empty"),
        ("   ", "empty"),
        ('{"bbox_2d": [1, 2, 3, 4]', "not valid JSON"),
        ("the red cup at 1, 2, 3, 4", "not valid JSON"),
        ('{"bbox_2d": [1, 2, 3]}', "4 numbers"),
        ('{"bbox_2d": [1, 2, 3, 4, 5]}', "4 numbers"),
        ('{"bbox_2d": ["1", "2", "3", "4"]}', "finite numbers"),
        ('{"bbox_2d": [1, 2, null, 4]}', "finite numbers"),
        ('{"bbox_2d": [true, 2, 3, 4]}', "finite numbers"),
        ('{"bbox_2d": "1,2,3,4"}', "must be a list"),
        ('{"bbox": [1, 2, 3, 4]}', "no 'bbox_2d'"),
        ("[1, 2, 3, 4]", "expected an object"),
        ('"just a string"', "expected an object"),
        ("42", "expected an object"),
        ('[{"bbox_2d": [1, 2, 3, 4]}, "oops"]', "answer[1]"),
    ],
)
def test_broken_answers_raise(answer: str | None, needle: str) -> None:
    with pytest.raises(AnswerParseError) as info:
        parse_bbox_answer(answer)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_no_answer_tag_end_to_end() -> None:
    _, answer = split_reasoning("<think>I think it is the cup.</think> {\"bbox_2d\": [1, 2, 3, 4]}")
    with pytest.raises(AnswerParseError, match="no <answer>"):
        parse_bbox_answer(answer)
