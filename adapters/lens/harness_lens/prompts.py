"""LENS's prompts, as written in hustvl/LENS ``src/open_r1/constants.py`` (revision 28cf510).

The text is reproduced here rather than imported because ``constants.py`` imports the whole
reward module (``from src.open_r1.rewards import *``); ``tests/test_prompts.py`` checks these
strings against the checkout's file when ``HARNESS_LENS_REPO`` names one.

The chat is built as upstream's evaluation scripts build it (``eval/evaluate_res2.py``
``ReferSegEvaluationSet.__getitem__``, ``eval/evaluate_reasonseg.py``, ``demo.py``): the
system message's content is a plain string, the user's content an image placeholder followed
by the template filled with the raw expression (no lower-casing, no stripping, no added full
stop: ``make_conversation_image``'s trailing "." is training-only).
"""

from __future__ import annotations

from typing import Any, Protocol

# system_prompt_registry["default"] (QWEN2_SYS): note the trailing space.
SYSTEM_PROMPT = "You are a helpful assistant. "

# question_template_registry["pr1_grounding"]
PR1_GROUNDING = "Output the bounding box of the {question} in the image."

# question_template_registry["samr1_v4"] (SAMR1_V4_TEMPLATE): sentences concatenated with no space.
SAMR1_V4 = (
    'Locate "{question}", report the bbox coordinates in JSON format.'
    "Compare the difference between objects and find the most closely matched one."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the one bbox inside the interested object in JSON format."
    "i.e., <think>thinking process here</think>"
    "<answer>answer here</answer>"
)

TEMPLATES: dict[str, str] = {"pr1_grounding": PR1_GROUNDING, "samr1_v4": SAMR1_V4}


class ChatTemplater(Protocol):
    """What renders a chat: a transformers processor or tokenizer."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def question(template: str, expression: str) -> str:
    """The user text: the named template filled with the expression as given."""
    try:
        text = TEMPLATES[template]
    except KeyError:
        raise ValueError(f"unknown LENS prompt template {template!r}; known: {', '.join(sorted(TEMPLATES))}") from None
    return text.format(question=expression)


def messages(template: str, expression: str) -> list[dict[str, Any]]:
    """The chat of one expression, exactly as upstream builds it."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question(template, expression)}]},
    ]


def render(templater: ChatTemplater, template: str, expression: str) -> str:
    """The prompt text fed to the processor: the checkpoint's chat template, generation prompt added."""
    text = templater.apply_chat_template(messages(template, expression), tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected the prompt text")
    return text
