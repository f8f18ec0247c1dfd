"""Parsing of reasoning models' text answers (Seg-Zero / VisionReasoner style).

These models write ``<think>...</think><answer>...</answer>`` with a JSON answer such as
``{"bbox_2d": [x1, y1, x2, y2]}`` or a list of such objects. Parsing lives here, once, so
every adapter fails the same way on the same broken text: a parse failure is a property of
the model's output that the harness reports (``ParseStatus.FAILED``), and adapters must
not each invent their own leniency.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

BBox = tuple[float, float, float, float]

# Seg-Zero's own patterns (non-greedy, across lines): the first tag pair wins.
_THINK = re.compile(r"<think>\s*(.*?)\s*</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)


class AnswerParseError(ValueError):
    """A model answer that cannot be read as boxes; the message says what was wrong."""


def split_reasoning(text: str | None) -> tuple[str | None, str | None]:
    """Return (think content, answer content), each stripped; None for a missing tag pair."""
    if not text:
        return None, None
    think = _THINK.search(text)
    answer = _ANSWER.search(text)
    return (think.group(1).strip() if think else None, answer.group(1).strip() if answer else None)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _box(value: Any, where: str) -> BBox | None:
    """One ``bbox_2d`` value: four finite numbers (reordered so x1<=x2, y1<=y2), or [] for none."""
    if not isinstance(value, list):
        raise AnswerParseError(f"{where}: bbox_2d must be a list of 4 numbers, got {type(value).__name__}")
    if not value:
        return None
    if len(value) != 4:
        raise AnswerParseError(f"{where}: bbox_2d must have 4 numbers [x1, y1, x2, y2], got {len(value)}")
    nums: list[float] = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise AnswerParseError(f"{where}: bbox_2d values must be finite numbers, got {v!r}")
        nums.append(float(v))
    x1, y1, x2, y2 = nums
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def parse_bbox_answer(answer: str | None) -> list[BBox]:
    """Boxes in an answer: a ``{"bbox_2d": [...]}`` object or a list of them.

    ``{"bbox_2d": []}`` and ``[]`` mean "no object" and give ``[]``. Anything else that is
    not of that shape raises ``AnswerParseError``: a box that is only nearly right (three
    numbers, strings) is a failed answer, not a guess the harness makes for the model.
    """
    if answer is None:
        raise AnswerParseError("no <answer>...</answer> in the model output")
    if not isinstance(answer, str):
        raise AnswerParseError(f"the answer must be text, got {type(answer).__name__}")
    if not answer.strip():
        raise AnswerParseError("the answer is empty")
    try:
        data = json.loads(answer)
    except json.JSONDecodeError as exc:
        raise AnswerParseError(f"the answer is not valid JSON ({exc.msg} at char {exc.pos}): {_short(answer)!r}") from exc
    items = data if isinstance(data, list) else [data]
    boxes: list[BBox] = []
    for i, item in enumerate(items):
        where = "answer" if not isinstance(data, list) else f"answer[{i}]"
        if not isinstance(item, dict):
            got = f"{type(item).__name__}: {_short(json.dumps(item))}"
            raise AnswerParseError(f"{where}: expected an object with 'bbox_2d', got {got}")
        if "bbox_2d" not in item:
            raise AnswerParseError(f"{where}: no 'bbox_2d' key (keys: {', '.join(map(str, item)) or 'none'})")
        box = _box(item["bbox_2d"], where)
        if box is not None:
            boxes.append(box)
    return boxes
