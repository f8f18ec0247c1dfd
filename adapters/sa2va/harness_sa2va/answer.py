"""What counts as Sa2VA's answer mask: ``projects/sa2va/evaluation/sa2va_eval_refcoco.py`` (9832e1a).

``predict_forward`` returns the generated text and one mask per ``[SEG]`` token of the answer (each
(1, h, w) bool). The v2 script keeps a sentence's masks only when some were drawn and the text, with
``<|im_end|>`` and ``<|end|>`` removed and stripped, contains ``[SEG]``; the masks are then OR-ed
into one. Otherwise it stores ``None``, which its ``evaluate`` scores as an all-zero mask (I = 0,
U = the target's area): that is the default rule here, ``sa2va-v2``, with the sentence marked
``parse_status: failed`` and an empty mask. The v1 script (d01bf3f; not in the reference snapshot,
described in UPSTREAM-2026.md §1.4) skipped such sentences, leaving them out of cIoU: the named,
non-default rule ``sa2va-v1-skip`` reproduces it by returning them as not drawn (kept out of ``n``
and of every metric; the results count them as ``n_not_drawn``).

The text is kept as generated; ``<think>``/``<answer>`` parts (the reasoning prompt) are split out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ANSWER_RULES = ("sa2va-v2", "sa2va-v1-skip")
SEG = "[SEG]"
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def cleaned(text: str) -> str:
    return text.replace("<|im_end|>", "").replace("<|end|>", "").strip()


@dataclass(frozen=True)
class Answer:
    mask: np.ndarray | None  # (h, w) bool; None: no mask counts (see ``reason``)
    reason: str | None  # why there is no mask
    reasoning: str | None
    answer: str | None


def read(text: str, masks: Sequence[Any]) -> Answer:
    """The union of the drawn masks when the answer says [SEG] and masks were drawn; else no mask and why."""
    think = _THINK.search(text)
    said = _ANSWER.search(text)
    reasoning = think.group(1).strip() if think else None
    answer = said.group(1).strip() if said else cleaned(text)
    if len(masks) == 0:
        return Answer(None, "no mask drawn", reasoning, answer)
    if SEG not in cleaned(text):
        return Answer(None, "the answer has no [SEG]", reasoning, answer)
    union = np.asarray(masks[0]).astype(bool)
    for m in masks[1:]:
        union = union | np.asarray(m).astype(bool)
    if union.ndim == 3:  # (frames, h, w): one frame for an image
        union = union[0]
    return Answer(union, None, reasoning, answer)
