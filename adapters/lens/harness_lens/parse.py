"""Reading LENS's answer text: the box, the reasoning, and whether a box was there at all.

The box is found as upstream finds it (hustvl/LENS 28cf510 ``src/open_r1/utils.py
parse_float_sequence_within``): the first ``[n, n, n, n]``, else the first ``(n, n, n, n)``,
else the first ``(n, n),(n, n)``, with the same regular expressions (``-?\\d+(?:\\.\\d+)?``
numbers; whitespace where upstream allows it and nowhere else). The numbers are absolute
pixels of the image the language model saw (``coord_norm_type="qwen2p5vl"``) and are
rescaled per axis to the original (``demo.py rescale_box``). Upstream neither reorders nor
clips the box; neither do we (a box outside the image is recorded as the model wrote it).

Where upstream falls back silently to ``[0, 0, 0, 0]``, the adapter records a failed parse
with no box, and keeps the mask: LENS's mask comes from its learnable queries, not from
the box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.answer import split_reasoning
from harness.types import Box, ParseStatus

_NUM = r"(-?\d+(?:\.\d+)?)"
_PATTERNS = (
    # pattern1 [num, num, num, num]
    re.compile(r"\[\s*" + _NUM + r",\s*" + _NUM + r",\s*" + _NUM + r",\s*" + _NUM + r"\s*\]"),
    # pattern2 (num, num, num, num)
    re.compile(r"\(\s*" + _NUM + r",\s*" + _NUM + r",\s*" + _NUM + r",\s*" + _NUM + r"\s*\)"),
    # pattern3 (num, num),(num, num)
    re.compile(r"\(\s*" + _NUM + r",\s*" + _NUM + r"\),\s*\(\s*" + _NUM + r",\s*" + _NUM + r"\)"),
)


def find_box(text: str) -> Box | None:
    """The first box upstream's parser finds, in the model's pixels; None where it returns [0,0,0,0]
    for want of a match (a literal ``[0, 0, 0, 0]`` in the text is a match and is returned)."""
    for pattern in _PATTERNS:
        match = pattern.search(text)
        if match:
            x1, y1, x2, y2 = (float(match.group(i)) for i in range(1, 5))
            return (x1, y1, x2, y2)
    return None


def parse_float_sequence_within(text: str) -> list[float]:
    """Upstream's function with its exact return values, for comparison in tests."""
    box = find_box(text)
    return [0, 0, 0, 0] if box is None else list(box)  # type: ignore[list-item]


def rescale_box(box: Box, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> Box:
    """``demo.py rescale_box``: per-axis scaling from the LLM image's (h, w) to the original's."""
    from_h, from_w = from_hw
    to_h, to_w = to_hw
    sx, sy = to_w / from_w, to_h / from_h
    x1, y1, x2, y2 = box
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


@dataclass(frozen=True)
class ParsedAnswer:
    box: Box | None  # original-image pixels
    reasoning: str | None
    answer: str | None
    status: ParseStatus
    note: str | None = None


def parse_answer(text: str | None, llm_hw: tuple[int, int], original_hw: tuple[int, int]) -> ParsedAnswer:
    """The box (rescaled to the original image), the ``<think>`` reasoning and the answer part.

    ``answer`` is the ``<answer>`` content when the text has one, else the whole stripped
    text (the non-CoT checkpoint answers without tags). The box is searched in the whole
    text, as upstream does, not only inside ``<answer>``.
    """
    text = text or ""
    reasoning, tagged = split_reasoning(text)
    answer = tagged if tagged is not None else (text.strip() or None)
    box = find_box(text)
    if box is None:
        note = "empty output" if not text.strip() else "no box pattern in the output (upstream would use [0, 0, 0, 0])"
        return ParsedAnswer(None, reasoning, answer, ParseStatus.FAILED, note)
    return ParsedAnswer(rescale_box(box, llm_hw, original_hw), reasoning, answer, ParseStatus.OK)
