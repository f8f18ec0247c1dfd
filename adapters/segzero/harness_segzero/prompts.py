"""Seg-Zero / VisionReasoner prompts, question normalisation and the 840x840 resize.

The templates are the upstream strings, sentence for sentence, with no spaces between the
sentences (they are adjacent Python string literals upstream):

- ``multi``: dvlab-research/Seg-Zero 42a3345 ``evaluation_scripts/evaluation_visionreasoner.py``
  ``QUESTION_TEMPLATE`` (lines 112-118), identical to dvlab-research/VisionReasoner a455092
  ``vision_reasoner/models/vision_reasoner_model.py`` ``DETECTION_TEMPLATE`` (lines 66-72).
  The question is ``text.lower().strip(".\\"?!")`` (Seg-Zero line 134, VisionReasoner line 230).
- ``single``: Seg-Zero 42a3345 ``evaluation_scripts/evaluation.py`` (lines 90-96, 110-111) and ``inference_scripts/infer.py``:
  single quotes around the question, which is only ``text.lower().strip(".")``.
"""

from __future__ import annotations

from typing import Any, Literal

from PIL import Image

PromptStyle = Literal["multi", "single"]

RESIZE = 840  # 30 * 28: a multiple of Qwen2.5-VL's 28-pixel merge unit, so no further resize

MULTI_TEMPLATE = (
    'Please find "{Question}" with bboxs and points.'
    "Compare the difference between object(s) and find the most closely matched object(s)."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the bbox(es) and point(s) inside the interested object(s) in JSON format."
    "i.e., <think> thinking process here </think>"
    "<answer>{Answer}</answer>"
)
MULTI_ANSWER_EXAMPLE = '[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, {"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]'

SINGLE_TEMPLATE = (
    "Please find '{Question}' with bbox and points."
    "Compare the difference between objects and find the most closely matched one."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the one bbox and points of two largest inscribed circles inside the interested object in JSON format."
    "i.e., <think> thinking process here </think>"
    "<answer>{Answer}</answer>"
)
SINGLE_ANSWER_EXAMPLE = "{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}"


def question(text: str, style: PromptStyle) -> str:
    """The expression as upstream puts it into the prompt (lower-cased, end punctuation stripped)."""
    if style == "multi":
        return text.lower().strip('."?!')
    return text.lower().strip(".")


def user_text(text: str, style: PromptStyle) -> str:
    """The text part of the user turn for one expression."""
    if style == "multi":
        return MULTI_TEMPLATE.format(Question=question(text, style), Answer=MULTI_ANSWER_EXAMPLE)
    return SINGLE_TEMPLATE.format(Question=question(text, style), Answer=SINGLE_ANSWER_EXAMPLE)


def resize_for_model(image: Image.Image) -> Image.Image:
    """Squash to 840x840 with PIL bilinear, aspect ratio ignored (upstream ``image.resize``)."""
    return image.resize((RESIZE, RESIZE), Image.BILINEAR)


def messages(resized: Image.Image, text: str, style: PromptStyle) -> list[dict[str, Any]]:
    """One single-turn conversation: the resized image, then the prompt (no system turn)."""
    return [{"role": "user", "content": [{"type": "image", "image": resized}, {"type": "text", "text": user_text(text, style)}]}]
