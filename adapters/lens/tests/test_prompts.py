"""The prompts, character for character, and the chat as the checkpoint's template renders it."""

from __future__ import annotations

import ast

import pytest
import tiny

from harness_lens import prompts

EXPR = "man in red on the left"


def test_pr1_grounding_text() -> None:
    assert prompts.question("pr1_grounding", EXPR) == "Output the bounding box of the man in red on the left in the image."


def test_samr1_v4_text_has_no_spaces_between_sentences() -> None:
    expected = (
        'Locate "man in red on the left", report the bbox coordinates in JSON format.Compare the difference between '
        "objects and find the most closely matched one.Output the thinking process in <think> </think> and final answer "
        "in <answer> </answer> tags.Output the one bbox inside the interested object in JSON format.i.e., "
        "<think>thinking process here</think><answer>answer here</answer>"
    )
    assert prompts.question("samr1_v4", EXPR) == expected


def test_expression_is_inserted_raw() -> None:
    # no lower-casing, stripping or added full stop (the trailing "." is training-only upstream)
    assert prompts.question("pr1_grounding", " The Dog. ") == "Output the bounding box of the  The Dog.  in the image."


def test_messages_structure() -> None:
    assert prompts.messages("pr1_grounding", EXPR) == [
        {"role": "system", "content": "You are a helpful assistant. "},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompts.question("pr1_grounding", EXPR)}]},
    ]


def test_unknown_template() -> None:
    with pytest.raises(ValueError, match="unknown LENS prompt template"):
        prompts.question("nope", EXPR)


def test_rendered_chat_with_qwen_template() -> None:
    tok = tiny.build_tokenizer()
    text = prompts.render(tok, "pr1_grounding", EXPR)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant. <|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "Output the bounding box of the man in red on the left in the image.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def _registry(repo, name: str) -> dict:
    """A dict literal from upstream's constants.py, read without importing it (it imports the rewards)."""
    tree = ast.parse((repo / "src" / "open_r1" / "constants.py").read_text())
    consts: dict = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            if isinstance(node.value, (ast.Constant, ast.BinOp, ast.JoinedStr)) or target.isupper():
                try:
                    consts[target] = ast.literal_eval(node.value)
                except ValueError:
                    pass
            if target == name:
                return {ast.literal_eval(k): consts[v.id] if isinstance(v, ast.Name) else ast.literal_eval(v)
                        for k, v in zip(node.value.keys, node.value.values)}
    raise AssertionError(f"{name} not found")


def test_matches_upstream_constants(upstream_repo) -> None:
    questions = _registry(upstream_repo, "question_template_registry")
    systems = _registry(upstream_repo, "system_prompt_registry")
    assert questions["pr1_grounding"] == prompts.PR1_GROUNDING
    assert questions["samr1_v4"] == prompts.SAMR1_V4
    assert systems["default"] == prompts.SYSTEM_PROMPT
