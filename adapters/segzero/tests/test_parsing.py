"""Answer parsing on realistic and broken outputs; coordinate scaling on hand-computed values."""

from __future__ import annotations

import pytest
from harness.answer import AnswerParseError

from harness_segzero.parsing import SamPrompt, parse_multi, parse_single, scale, union_box

# A 333 x 250 image: x factor 333/840, y factor 250/840.
XF, YF = 333 / 840, 250 / 840

REALISTIC = (
    "<think> The image shows two people. The question asks for the woman holding an umbrella, who stands on the right "
    "side of the frame. </think>\n<answer>[{\"bbox_2d\": [420, 100, 800, 839], \"point_2d\": [610, 400]}]</answer>"
)


def test_scale_is_upstream_rounding() -> None:
    assert scale(100, XF) == 40  # 39.642 + 0.5 -> 40.14 -> 40
    assert scale(101, XF) == 40  # 40.039 + 0.5 = 40.539 -> 40
    assert scale(102, XF) == 40  # 40.435 + 0.5 = 40.935 -> 40
    assert scale(103, XF) == 41  # 40.832 + 0.5 -> 41
    assert scale(840, XF) == 333
    assert scale(-3, 1.0) == -2  # int() truncates toward zero: int(-2.5) == -2
    assert scale(10.7, 1.0) == 11


def test_realistic_answer() -> None:
    parsed = parse_multi(REALISTIC, XF, YF)
    # x: 420*333/840 = 166.5 -> 167; 800*333/840 = 317.14 -> 317; 610*333/840 = 241.82 -> 242
    # y: 100*250/840 = 29.76 -> 30; 839*250/840 = 249.70 -> 250; 400*250/840 = 119.05 -> 119
    assert parsed.prompts == (SamPrompt((167, 30, 317, 250), ((242, 119),)),)
    assert parsed.answer.startswith("[{") and parsed.answer.endswith("}]")


def test_several_objects_and_union_box() -> None:
    text = '<answer>[{"bbox_2d": [0,0,84,84], "point_2d": [42,42]}, {"bbox_2d": [420,420,840,840], "point_2d": [600,600]}]</answer>'
    parsed = parse_multi(text, 1.0, 0.5)
    assert [p.box for p in parsed.prompts] == [(0, 0, 84, 42), (420, 210, 840, 420)]
    assert union_box(parsed.prompts) == (0.0, 0.0, 840.0, 420.0)


def test_empty_list_means_nothing_found() -> None:
    parsed = parse_multi("<think>none</think><answer>[]</answer>", XF, YF)
    assert parsed.prompts == ()
    assert union_box(parsed.prompts) is None


def test_boxes_outside_the_image_are_passed_through() -> None:
    # upstream hands SAM2 whatever the model wrote, scaled; so do we (no clipping, no reordering)
    parsed = parse_multi('<answer>[{"bbox_2d": [900, -20, 10, 1000], "point_2d": [1200, -5]}]</answer>', 1.0, 1.0)
    assert parsed.prompts[0].box == (900, -19, 10, 1000)
    assert parsed.prompts[0].points == ((1200, -4),)
    assert union_box(parsed.prompts) == (10.0, -19.0, 900.0, 1000.0)


def test_extra_coordinates_are_ignored_like_upstream() -> None:
    parsed = parse_multi('<answer>[{"bbox_2d": [1,2,3,4,5], "point_2d": [6,7,8]}]</answer>', 1.0, 1.0)
    assert parsed.prompts[0] == SamPrompt((1, 2, 3, 4), ((6, 7),))


def test_answer_tag_across_lines_and_first_pair_wins() -> None:
    text = '<answer>\n[{"bbox_2d": [1,2,3,4],\n "point_2d": [2,3]}]\n</answer> <answer>[]</answer>'
    assert len(parse_multi(text, 1.0, 1.0).prompts) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "empty"),
        ("", "empty"),
        ("<think>the dog</think> bbox [1,2,3,4]", "no <answer>"),
        ("<answer>[{\"bbox_2d\": [1,2,3,4], \"point_2d\": [1,2]}</answer>", "not valid JSON"),
        ("<answer></answer>", "not valid JSON"),
        ("<answer>{\"bbox_2d\": [1,2,3,4], \"point_2d\": [1,2]}</answer>", "must be a list"),
        ("<answer>[[1,2,3,4]]</answer>", "expected an object"),
        ("<answer>[{\"bbox_2d\": [1,2,3,4]}]</answer>", "'point_2d'"),
        ("<answer>[{\"point_2d\": [1,2]}]</answer>", "'bbox_2d'"),
        ("<answer>[{\"bbox_2d\": [1,2,3], \"point_2d\": [1,2]}]</answer>", "expected 4 numbers"),
        ("<answer>[{\"bbox_2d\": [1,2,3,4], \"point_2d\": [1]}]</answer>", "expected 2 numbers"),
        ("<answer>[{\"bbox_2d\": [\"1\",2,3,4], \"point_2d\": [1,2]}]</answer>", "must be numbers"),
        ("<answer>[{\"bbox_2d\": [NaN,2,3,4], \"point_2d\": [1,2]}]</answer>", "finite"),
        ("<answer>[{\"bbox_2d\": [true,2,3,4], \"point_2d\": [1,2]}]</answer>", "must be numbers"),
        ("<answer>[{\"bbox_2d\": null, \"point_2d\": [1,2]}]</answer>", "list of 4"),
    ],
)
def test_broken_outputs_fail_with_a_reason(text, message) -> None:
    with pytest.raises(AnswerParseError, match=message):
        parse_multi(text, XF, YF)


def test_truncated_generation_fails() -> None:
    with pytest.raises(AnswerParseError, match="no <answer>"):
        parse_multi(REALISTIC[:-30], XF, YF)


# ----------------------------------------------------------------------------- 77f9ea5 parser

def test_single_object_answer() -> None:
    text = '<think> one </think><answer>{"bbox": [100, 101, 420, 839], "points_1": [250, 300], "points_2": [251, 301]}</answer>'
    parsed = parse_single(text, XF, YF)
    # round(int(v) * f), Python's round: 100*333/840 = 39.64 -> 40; 101*250/840 = 30.06 -> 30; 420*333/840 = 166.5 -> 166 (to even)
    # 839*250/840 = 249.70 -> 250; 250*333/840 = 99.11 -> 99; 300*250/840 = 89.29 -> 89; 251 -> 99.50 -> 100 (to even); 301 -> 89.58 -> 90
    assert parsed.prompts == (SamPrompt((40, 30, 166, 250), ((99, 89), (100, 90))),)


def test_single_object_reads_the_first_object_anywhere_and_truncates_floats() -> None:
    text = 'I think {"bbox_2d": [10.9, "20", 30, 40], "points_a": [1.9, 2], "Points_b": [3, 4], "points_c": [0, 0]} and more'
    parsed = parse_single(text, 1.0, 1.0)
    assert parsed.prompts == (SamPrompt((10, 20, 30, 40), ((1, 2), (3, 4))),)


def test_single_object_string_coordinates_index_like_upstream() -> None:
    # upstream: len("1234") == 4, then int("1"), int("2"), ... ; points index [0] and [1] only
    text = '<answer>{"bbox": "1234", "points_1": "12", "points_2": "567"}</answer>'
    assert parse_single(text, 1.0, 1.0).prompts == (SamPrompt((1, 2, 3, 4), ((1, 2), (5, 6))),)
    # with the 333 x 250 factors: round(1*0.396) = 0, round(2*0.298) = 1, round(3*0.396) = 1, round(4*0.298) = 1;
    # points: round(1*0.396) = 0, round(2*0.298) = 1; round(5*0.396) = round(1.98) = 2, round(6*0.298) = round(1.79) = 2
    assert parse_single(text, XF, YF).prompts == (SamPrompt((0, 1, 1, 1), ((0, 1), (2, 2))),)
    # "9876" with factor 2: 18, 16, 14, 12; points "90" -> (18, 0), "09" -> (0, 18)
    text = '{"bbox": "9876", "points_1": "90", "points_2": "09"}'
    assert parse_single(text, 2.0, 2.0).prompts == (SamPrompt((18, 16, 14, 12), ((18, 0), (0, 18))),)


def test_single_object_lists_of_strings_and_huge_numbers() -> None:
    # int("100") = 100, int("-5") = -5; round(100 * 1.5) = 150, round(-5 * 1.5) = round(-7.5) = -8 (to even)
    text = '{"bbox": ["100", "-5", 30.9, "0040"], "points_1": ["7", 8, 9], "points_2": [1, 2]}'
    assert parse_single(text, 1.5, 1.5).prompts == (SamPrompt((150, -8, 45, 60), ((10, 12), (2, 3))),)
    # 10**400 parses as an int; int * float overflows upstream too
    with pytest.raises(AnswerParseError, match="out of range"):
        parse_single('{"bbox": [1' + "0" * 400 + ', 2, 3, 4], "points_1": [1,2], "points_2": [3,4]}', 1.5, 1.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("no braces at all", "no {"),
        ("<answer>{'bbox': [1,2,3,4], 'points_1': [1,2], 'points_2': [3,4]}</answer>", "not valid JSON"),  # the prompt's own example
        ('{"box": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}', "containing 'bbox'"),
        ('{"bbox": [1,2,3], "points_1": [1,2], "points_2": [3,4]}', "4 entries"),
        ('{"bbox": "123", "points_1": [1,2], "points_2": [3,4]}', "4 entries"),  # len("123") != 4
        ('{"bbox": 1234, "points_1": [1,2], "points_2": [3,4]}', "4 entries"),  # len(int) raises
        ('{"bbox": "12a4", "points_1": [1,2], "points_2": [3,4]}', "not an integer"),  # int("a") raises
        ('{"bbox": "1.34", "points_1": [1,2], "points_2": [3,4]}', "not an integer"),  # int(".") raises
        ('{"bbox": {"a":1,"b":2,"c":3,"d":4}, "points_1": [1,2], "points_2": [3,4]}', "not valid JSON"),  # {[^}]+} stops at the inner }
        ('{"bbox": [1,2,3,4], "points_1": "1", "points_2": [3,4]}', "at least 2"),  # "1"[1]: IndexError
        ('{"bbox": [1,2,3,4], "points_1": 12, "points_2": [3,4]}', "list"),  # 12[0]: TypeError
        ('{"bbox": [1,2,3,4], "points_1": [1,2], "points_2": "3 4"}', "not an integer"),  # int(" ") raises
        ('{"bbox": ["1.5",2,3,4], "points_1": [1,2], "points_2": [3,4]}', "not an integer"),  # int("1.5") raises
        ('{"bbox": [NaN,2,3,4], "points_1": [1,2], "points_2": [3,4]}', "not an integer"),  # int(nan) raises
        ('{"bbox": [Infinity,2,3,4], "points_1": [1,2], "points_2": [3,4]}', "not an integer"),  # int(inf) raises
        ('{"bbox": [1e400,2,3,4], "points_1": [1,2], "points_2": [3,4]}', "not an integer"),  # json reads inf
        ('{"bbox": [1,2,3,4], "points_1": [1,2]}', "two keys"),
        ('{"bbox": [1,2,3,4], "points_1": [1], "points_2": [3,4]}', "2 numbers"),
        ('{"bbox": [1,2,"x",4], "points_1": [1,2], "points_2": [3,4]}', "not an integer"),
    ],
)
def test_single_object_broken(text, message) -> None:
    with pytest.raises(AnswerParseError, match=message):
        parse_single(text, 1.0, 1.0)
