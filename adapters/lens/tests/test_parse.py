"""Box parsing on realistic and broken outputs, rescaling, reasoning."""

from __future__ import annotations

import pytest
from harness.types import ParseStatus

from harness_lens.parse import find_box, parse_answer, parse_float_sequence_within, rescale_box

LLM = (476, 644)  # smart_resize of a 480x640 image
ORIG = (480, 640)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[100, 200, 300, 400]", [100.0, 200.0, 300.0, 400.0]),
        ("The man is at [100,200,300,400].", [100.0, 200.0, 300.0, 400.0]),
        ("[ 1.5, 2, 3.25, 4 ]", [1.5, 2.0, 3.25, 4.0]),
        ("(10, 20, 30, 40)", [10.0, 20.0, 30.0, 40.0]),
        ("(10,20),(30,40)", [10.0, 20.0, 30.0, 40.0]),
        ("(10, 20), (30, 40)", [10.0, 20.0, 30.0, 40.0]),
        # the Qwen grounding form after skip_special_tokens drops <|box_start|> / <|box_end|>
        ("person(104,52),(388,470)", [104.0, 52.0, 388.0, 470.0]),
        ("<|box_start|>(104,52),(388,470)<|box_end|>", [104.0, 52.0, 388.0, 470.0]),
        ('<think>two men; the left one</think><answer>{"bbox_2d": [12, 8, 44, 50]}</answer>', [12.0, 8.0, 44.0, 50.0]),
        # first pattern wins over earlier text of another pattern
        ("(1, 2, 3, 4) then [5, 6, 7, 8]", [5.0, 6.0, 7.0, 8.0]),
        ("[1, 2, 3, 4] and [5, 6, 7, 8]", [1.0, 2.0, 3.0, 4.0]),
        # negative numbers and values outside the image are kept as written (upstream does not clip)
        ("[-5, -10, 900, 2000]", [-5.0, -10.0, 900.0, 2000.0]),
        ("[0, 0, 0, 0]", [0.0, 0.0, 0.0, 0.0]),
    ],
)
def test_find_box_like_upstream(text: str, expected: list[float]) -> None:
    assert find_box(text) == tuple(expected)
    assert parse_float_sequence_within(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot find it.",
        "[100, 200, 300]",  # three numbers
        '{"bbox_2d": [100, 200, 300, "400"]}',  # a string value
        "[100 200 300 400]",  # no commas
        "[1e2, 2, 3, 4]",  # exponent: not a number to upstream's pattern
        "[.5, 2, 3, 4]",  # no leading digit
        "(10, 20) ,(30, 40)",  # upstream's pattern allows no space before the comma
        '<answer>{"bbox_2d": [10, 20, 30, 40</answer>',  # truncated: no closing bracket
    ],
)
def test_no_box_is_upstream_zeros(text: str) -> None:
    assert find_box(text) is None
    assert parse_float_sequence_within(text) == [0, 0, 0, 0]


def test_rescale_per_axis() -> None:
    # 644 px wide LLM image -> 640 wide original; 476 high -> 480 high
    assert rescale_box((322.0, 238.0, 644.0, 476.0), LLM, ORIG) == pytest.approx((320.0, 240.0, 640.0, 480.0))
    assert rescale_box((10, 20, 30, 40), (56, 56), (48, 64)) == pytest.approx((10 * 64 / 56, 20 * 48 / 56, 30 * 64 / 56, 40 * 48 / 56))


def test_parse_ok_plain() -> None:
    p = parse_answer("[322, 238, 644, 476]", LLM, ORIG)
    assert p.status is ParseStatus.OK
    assert p.box == pytest.approx((320.0, 240.0, 640.0, 480.0))
    assert p.reasoning is None and p.answer == "[322, 238, 644, 476]"


def test_parse_cot() -> None:
    text = '<think>The left man wears red.</think><answer>{"bbox_2d": [322, 238, 644, 476]}</answer>'
    p = parse_answer(text, LLM, ORIG)
    assert p.status is ParseStatus.OK
    assert p.reasoning == "The left man wears red."
    assert p.answer == '{"bbox_2d": [322, 238, 644, 476]}'
    assert p.box == pytest.approx((320.0, 240.0, 640.0, 480.0))


def test_box_searched_in_whole_text_as_upstream() -> None:
    # a box in the reasoning but none in the answer: upstream takes the first match anywhere
    p = parse_answer("<think>maybe [1, 2, 3, 4]</think><answer>not sure</answer>", LLM, ORIG)
    assert p.status is ParseStatus.OK and p.answer == "not sure"
    assert p.box == pytest.approx(rescale_box((1, 2, 3, 4), LLM, ORIG))


def test_box_outside_image_recorded_as_is() -> None:
    p = parse_answer("[-10, 0, 1000, 900]", LLM, ORIG)
    assert p.status is ParseStatus.OK
    assert p.box == pytest.approx(rescale_box((-10, 0, 1000, 900), LLM, ORIG))
    assert p.box[2] > ORIG[1] and p.box[0] < 0


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("the man on the left", "the man on the left"),
        ('<think>hmm</think><answer>{"bbox_2d": [1, 2, 3]}</answer>', '{"bbox_2d": [1, 2, 3]}'),  # bad JSON
        ("<think>no answer tag, cut off at max_length", "<think>no answer tag, cut off at max_length"),
    ],
)
def test_failed_parses(text: str | None, answer: str | None) -> None:
    p = parse_answer(text, LLM, ORIG)
    assert p.status is ParseStatus.FAILED
    assert p.box is None
    assert p.answer == answer


def test_reasoning_without_answer_tag() -> None:
    p = parse_answer("<think>the dog</think> [1, 2, 3, 4]", LLM, ORIG)
    assert p.reasoning == "the dog" and p.status is ParseStatus.OK


def test_matches_upstream_function(upstream_repo) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("lens_upstream_utils", upstream_repo / "src" / "open_r1" / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports only json, re, os at top level
    texts = ["", "[1, 2, 3, 4]", "(1, 2, 3, 4)", "(1,2),(3,4)", "(1, 2) ,(3, 4)", "[1.5,2,3,4]", "[-1, -2, 3, 4]",
             '<answer>{"bbox_2d": [12, 8, 44, 50]}</answer>', "[.5, 1, 2, 3]", "(1,2), (3,4)", "x [1,2,3] (4,5,6,7)"]
    for t in texts:
        assert parse_float_sequence_within(t) == module.parse_float_sequence_within(t), t
