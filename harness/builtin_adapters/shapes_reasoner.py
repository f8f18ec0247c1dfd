"""A CPU "reasoning segmenter" for the shapes suite, built from classical vision.

It plays the part of a Seg-Zero-style model so that the full path (text with ``<think>``
and ``<answer>``, answer parsing, norm1000 boxes, a box-prompted segmenter) runs without
weights. It sees only what a real model sees, the pixels and the expression (it is given a
Query, which has no ground truth): never the generator's scene. Its mistakes are genuine (an
occluded circle stops looking round, touching shapes of one colour merge into one blob),
which is what makes it a useful, imperfect baseline rather than an oracle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.answer import AnswerParseError, parse_bbox_answer, split_reasoning
from harness.types import RLE, Box, ParseStatus, Prediction, Query

# What the "model" believes the colour words look like: textbook colours, not the generator's.
NOMINAL = {"red": (230, 30, 30), "green": (30, 170, 50), "blue": (30, 70, 230),
           "yellow": (245, 215, 30), "purple": (150, 60, 190), "orange": (250, 140, 20)}
NOUNS = {"circle": "circle", "square": "square", "rectangle": "rectangle", "triangle": "triangle",
         "shape": None, "object": None, "one": None}
EXTREME_WORDS = {"leftmost": ("cx", 1, "left"), "rightmost": ("cx", -1, "right"), "topmost": ("cy", 1, "top"),
                 "uppermost": ("cy", 1, "top"), "highest": ("cy", 1, "top"), "bottommost": ("cy", -1, "bottom"),
                 "lowest": ("cy", -1, "bottom")}
SIZE_WORDS = {"largest": 1, "biggest": 1, "larger": 1, "bigger": 1, "smallest": -1, "smaller": -1}
RELATION_WORDS = {"left of": ("cx", 1), "right of": ("cx", -1), "above": ("cy", 1), "over": ("cy", 1),
                  "below": ("cy", -1), "under": ("cy", -1)}
FOREGROUND_DISTANCE = 40  # max channel difference from the background colour
MIN_COMPONENT = 40  # pixels; smaller blobs are noise or slivers


@dataclass
class Blob:
    """One detected object: a connected component of one colour."""

    colour: str
    kind: str
    mask: np.ndarray
    area: int
    cx: float
    cy: float
    box: tuple[int, int, int, int]  # pixel x1, y1, x2, y2 (exclusive ends)

    def pixel_box(self) -> Box:
        return (float(self.box[0]), float(self.box[1]), float(self.box[2]), float(self.box[3]))

    def describe(self) -> str:
        text = f"{self.colour} {self.kind} at ({self.cx:.0f}, {self.cy:.0f})"
        return ("an " if text[0] in "aeiou" else "a ") + text


@dataclass(frozen=True)
class Phrase:
    colour: str | None
    kind: str | None  # None: any shape; a word it cannot see (star) matches nothing

    def matches(self, blob: Blob) -> bool:
        return (self.colour is None or blob.colour == self.colour) and (self.kind is None or blob.kind == self.kind)

    def text(self, plural: bool = False) -> str:
        noun = (self.kind or "shape") + ("s" if plural else "")
        return f"{self.colour} {noun}" if self.colour else noun


def classify(mask: np.ndarray) -> str:
    """Kind from two descriptors: how much of its bounding box it fills, and its aspect ratio."""
    rows, cols = np.nonzero(mask)
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    fill = len(rows) / float(h * w)
    if fill >= 0.88:
        return "square" if 0.75 <= w / h <= 1.33 else "rectangle"
    return "circle" if fill >= 0.66 else "triangle"


def detect(image: np.ndarray) -> list[Blob]:
    """Segment the image: background from its border, colour by nearest nominal colour, then components."""
    img = image.astype(np.int32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    background = np.median(border, axis=0)
    foreground = np.abs(img - background).max(axis=-1) > FOREGROUND_DISTANCE
    names = list(NOMINAL)
    palette = np.array([NOMINAL[n] for n in names], dtype=np.int32)
    nearest = ((img[:, :, None, :] - palette[None, None]) ** 2).sum(-1).argmin(-1)
    blobs: list[Blob] = []
    for ci, name in enumerate(names):
        labels, _ = ndimage.label(foreground & (nearest == ci))
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            sub = labels[sl] == k
            area = int(sub.sum())
            if area < MIN_COMPONENT:
                continue
            mask = np.zeros(foreground.shape, dtype=bool)
            mask[sl] = sub
            ys, xs = np.nonzero(mask)
            box = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
            blobs.append(Blob(name, classify(sub), mask, area, float(xs.mean()), float(ys.mean()), box))
    return sorted(blobs, key=lambda b: (b.cx, b.cy))


def _phrase(words: str) -> Phrase | None:
    """``[colour] noun`` (singular or plural), or None when the words are not of that form."""
    parts = words.split()
    colour = parts.pop(0) if parts and parts[0] in NOMINAL else None
    if len(parts) != 1:
        return None
    noun = parts[0][:-1] if parts[0].endswith("s") and parts[0][:-1] in NOUNS else parts[0]
    return Phrase(colour, NOUNS.get(noun, noun))


def parse_expression(text: str) -> tuple[str, Phrase, str, Phrase | None] | None:
    """(op, phrase, word, anchor) from the expression, or None when the grammar does not cover it."""
    t = re.sub(r"\s+", " ", re.sub(r"[^a-z ]", " ", text.lower())).strip()
    t = re.sub(r"^(the|a|an) ", "", t)
    m = re.fullmatch(r"(larger|bigger|smaller) of the two (.+)", t)
    if m and (p := _phrase(m.group(2))):
        return "of_two", p, m.group(1), None
    m = re.fullmatch(r"(\w+) (.+)", t)
    if m and m.group(1) in EXTREME_WORDS | SIZE_WORDS and (p := _phrase(m.group(2))):
        return ("extreme" if m.group(1) in EXTREME_WORDS else "size"), p, m.group(1), None
    m = re.fullmatch(r"(.+?) (?:that is |which is )?(?:to the |on the )?(left of|right of|above|over|below|under) (?:the )?(.+)",
                     t)
    if m and (p := _phrase(m.group(1))) and (a := _phrase(m.group(3))):
        return "relation", p, m.group(2), a
    m = re.fullmatch(r"(?:only )?(.+)", t)
    if m and (p := _phrase(m.group(1))):
        return "only", p, "", None
    return None


def _biggest(blobs: list[Blob]) -> Blob:
    return max(blobs, key=lambda b: b.area)


def resolve(expression: str, blobs: list[Blob]) -> tuple[Blob | None, str]:
    """The blob the expression refers to (None: no such object) and why, in words."""
    parsed = parse_expression(expression)
    if parsed is None:
        words = set(re.findall(r"[a-z]+", expression.lower()))
        colours = words & set(NOMINAL)
        kinds = {NOUNS.get(w.rstrip("s"), "") for w in words} - {"", None}
        pool = [b for b in blobs if (not colours or b.colour in colours) and (not kinds or b.kind in kinds)] or blobs
        if not pool:
            return None, "I cannot parse the expression and see nothing, so I answer that there is no object."
        pick = _biggest(pool)
        return pick, f"I cannot parse the expression fully, so I guess the largest matching shape, {pick.describe()}."
    op, phrase, word, anchor_phrase = parsed
    cands = [b for b in blobs if phrase.matches(b)]
    if op == "relation":
        assert anchor_phrase is not None
        anchors = [b for b in blobs if anchor_phrase.matches(b)]
        if not anchors:
            return None, f"I see no {anchor_phrase.text()}, so nothing can be {word} it."
        anchor = _biggest(anchors)
        note = "" if len(anchors) == 1 else f" There are {len(anchors)} {anchor_phrase.text(True)}; I take the largest."
        attr, sign = RELATION_WORDS[word]
        ok = [b for b in cands if b is not anchor and sign * (getattr(anchor, attr) - getattr(b, attr)) > 0]
        where = f"The {anchor_phrase.text()} is at ({anchor.cx:.0f}, {anchor.cy:.0f}).{note}"
        if not ok:
            return None, f"{where} No {phrase.text()} is {word} it."
        pick = min(ok, key=lambda b: (b.cx - anchor.cx) ** 2 + (b.cy - anchor.cy) ** 2)
        why = "it is the only one" if len(ok) == 1 else f"it is the closest of {len(ok)}"
        return pick, f"{where} The {phrase.text()} {word} it is {pick.describe()}; {why}."
    if not cands:
        return None, f"I see no {phrase.text()}, so there is no object to point at."
    listing = ", ".join(f"{b.describe()} (area {b.area})" for b in cands)
    if op == "only":
        if len(cands) == 1:
            return cands[0], f"There is exactly one {phrase.text()}: {cands[0].describe()}."
        pick = _biggest(cands)
        return pick, f"The expression fits {len(cands)} shapes: {listing}. It is ambiguous to me, so I choose the largest."
    if op == "extreme":
        attr, sign, side = EXTREME_WORDS[word]
        pick = min(cands, key=lambda b: sign * getattr(b, attr))
        at = f"({pick.cx:.0f}, {pick.cy:.0f})"
        return pick, f"The {phrase.text(True)} are {listing}; the one furthest to the {side} is at {at}."
    sign = SIZE_WORDS[word]
    pick = max(cands, key=lambda b: sign * b.area)
    note = f" I expected two {phrase.text(True)} but see {len(cands)}." if op == "of_two" and len(cands) != 2 else ""
    return pick, f"The {phrase.text(True)} are {listing}.{note} The {word} is the one at ({pick.cx:.0f}, {pick.cy:.0f})."


def _norm1000(box: tuple[int, int, int, int], width: int, height: int) -> list[int]:
    x1, y1, x2, y2 = box
    return [round(x1 / width * 1000), round(y1 / height * 1000), round(x2 / width * 1000), round(y2 / height * 1000)]


class ShapesReasoner(Adapter):
    """Reads the image and the expression only; answers like a box-then-mask reasoning model."""

    info = AdapterInfo(
        name="shapes-reasoner",
        description="CPU reasoner for the shapes suite: parses the expression, finds shapes by colour and "
        "connected components, answers a norm1000 box in <answer> and segments the chosen component",
        outputs=("mask", "box", "text", "reasoning"),
        box_space="norm1000",
        version="1",
    )
    model_thread = False  # NumPy and SciPy work in this interpreter: nothing to overlap (harness.adapter)

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        height, width = image.shape[:2]
        blobs = detect(image)
        seen = ", ".join(b.describe() for b in blobs)
        inventory = f"I see {len(blobs)} shape{'s' if len(blobs) != 1 else ''}: {seen}." if blobs else "I see no shapes."
        return [self._answer(q.expression, blobs, inventory, width, height) for q in queries]

    def _answer(self, expression: str, blobs: list[Blob], inventory: str, width: int, height: int) -> Prediction:
        pick, why = resolve(expression, blobs)
        payload = {"bbox_2d": _norm1000(pick.box, width, height) if pick is not None else []}
        text = f"<think>{inventory} The expression is \"{expression}\". {why}</think><answer>{json.dumps(payload)}</answer>"
        # From here on only the text counts, as for a real model: parse it, then prompt the segmenter.
        reasoning, answer = split_reasoning(text)
        try:
            boxes = parse_bbox_answer(answer)
        except AnswerParseError as exc:
            return Prediction(mask=None, text=text, reasoning=reasoning, answer=answer,
                              parse_status=ParseStatus.FAILED, error=str(exc))
        if not boxes:
            return Prediction(mask=masks.empty(height, width), box=None, text=text, reasoning=reasoning, answer=answer,
                              parse_status=ParseStatus.OK)
        box = boxes[0]
        return Prediction(mask=self._segment(box, blobs, width, height), box=box, text=text, reasoning=reasoning,
                          answer=answer, parse_status=ParseStatus.OK)

    @staticmethod
    def _segment(box: Box, blobs: list[Blob], width: int, height: int) -> RLE:
        """The box-prompted segmenter: the detected component that best fills the prompt box."""
        sx, sy = width / 1000.0, height / 1000.0
        prompt = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        scored = [(masks.box_iou(prompt, b.pixel_box()), b) for b in blobs]
        overlap, best = max(scored, key=lambda t: t[0], default=(0.0, None))
        if best is None or overlap <= 0.0:  # nothing there to snap to: the box itself is the mask
            return masks.box_mask(prompt, height, width)
        return masks.encode(best.mask)
