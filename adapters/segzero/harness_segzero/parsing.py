"""Reading Seg-Zero / VisionReasoner answers into SAM prompts in original pixels.

Both parsers accept what upstream's accepts and fail where upstream's raises, so a sample
that upstream scores as a reasoning error (I=0, U=|GT|) is a failed prediction here
(``ParseStatus.FAILED``; the harness's default ``failure: zero`` policy scores it the same).

``parse_multi`` follows ``extract_bbox_points_think`` of dvlab-research/Seg-Zero 42a3345
``evaluation_scripts/evaluation_visionreasoner.py`` lines 26-47 (and VisionReasoner a455092
``vision_reasoner_model.py`` lines 88-128): ``<answer>\\s*(.*?)\\s*</answer>`` (DOTALL), then
``json.loads``, then for every item of the list ``int(v * factor + 0.5)`` on ``bbox_2d[0:4]``
and ``point_2d[0:2]``, x by W/840 and y by H/840. An empty list is a valid "nothing found".
The only deliberate difference: a JSON ``true``/``false`` as a coordinate is rejected (upstream's
arithmetic would silently read it as 1/0).

``parse_single`` follows Seg-Zero 42a3345 (unchanged since 77f9ea5) ``evaluation_scripts/evaluation.py`` lines 26-52: the
first ``{[^}]+}`` anywhere in the output, ``json.loads``, the first key containing ``bbox`` (its
value must have ``len() == 4``) and the first two keys containing ``points`` (indexed ``[0]`` and
``[1]`` with no length check), each coordinate ``round(int(v) * factor)``. As upstream, strings
index character by character: ``"bbox": "1234"`` is ``[1, 2, 3, 4]`` and ``"points_1": "12"`` (or
``"123"``) is ``[1, 2]``; a non-digit character fails ``int()``, so the sample fails. Lists of digit
strings (``["10", "20", ...]``) parse, floats truncate (``int(10.9) == 10``), NaN/Infinity fail.
Upstream also fails when the text has no ``<think>...</think>``
(an unbound variable); that accident is not reproduced.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from harness.answer import AnswerParseError

ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
FIRST_OBJECT = re.compile(r"{[^}]+}")

IntBox = tuple[int, int, int, int]
IntPoint = tuple[int, int]


@dataclass(frozen=True)
class SamPrompt:
    """One object to segment: a box (as the model wrote it, scaled, not reordered) and its points."""

    box: IntBox
    points: tuple[IntPoint, ...]


@dataclass(frozen=True)
class Parsed:
    """What an output gave: the SAM prompts and the answer text they came from."""

    prompts: tuple[SamPrompt, ...]
    answer: str


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnswerParseError(f"{where}: coordinates must be numbers, got {value!r}")
    if not math.isfinite(value):
        raise AnswerParseError(f"{where}: coordinates must be finite, got {value!r}")
    return float(value)


def _coords(value: Any, n: int, where: str) -> list[float]:
    if not isinstance(value, list):
        raise AnswerParseError(f"{where}: expected a list of {n} numbers, got {type(value).__name__}")
    if len(value) < n:
        raise AnswerParseError(f"{where}: expected {n} numbers, got {len(value)}")
    return [_number(v, where) for v in value[:n]]  # upstream indexes [0..n-1]; extra entries are ignored


def scale(value: float, factor: float) -> int:
    """Upstream's rounding: ``int(v * factor + 0.5)`` (truncates toward zero for negatives)."""
    return int(value * factor + 0.5)


def parse_multi(text: str | None, x_factor: float, y_factor: float) -> Parsed:
    """A ``[{"bbox_2d": [...], "point_2d": [...]}, ...]`` answer, scaled to original pixels."""
    if not text:
        raise AnswerParseError("the model output is empty")
    match = ANSWER.search(text)
    if match is None:
        raise AnswerParseError("no <answer>...</answer> in the model output")
    answer = match.group(1)
    try:
        data = json.loads(answer)
    except json.JSONDecodeError as exc:
        raise AnswerParseError(f"the answer is not valid JSON ({exc.msg} at char {exc.pos}): {_short(answer)!r}") from exc
    if not isinstance(data, list):
        raise AnswerParseError(f"the answer must be a list of objects with bbox_2d and point_2d, got {type(data).__name__}")
    prompts: list[SamPrompt] = []
    for i, item in enumerate(data):
        where = f"answer[{i}]"
        if not isinstance(item, dict):
            raise AnswerParseError(f"{where}: expected an object, got {type(item).__name__}")
        for key in ("bbox_2d", "point_2d"):
            if key not in item:
                raise AnswerParseError(f"{where}: no {key!r} (keys: {', '.join(map(str, item)) or 'none'})")
        x1, y1, x2, y2 = _coords(item["bbox_2d"], 4, f"{where}.bbox_2d")
        px, py = _coords(item["point_2d"], 2, f"{where}.point_2d")
        box = (scale(x1, x_factor), scale(y1, y_factor), scale(x2, x_factor), scale(y2, y_factor))
        prompts.append(SamPrompt(box, ((scale(px, x_factor), scale(py, y_factor)),)))
    return Parsed(tuple(prompts), answer)


def _int_of(value: Any, where: str) -> int:
    """Python's ``int(v)`` as upstream applies it (numbers truncate, digit strings parse)."""
    if isinstance(value, bool):
        raise AnswerParseError(f"{where}: coordinates must be numbers, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise AnswerParseError(f"{where}: not an integer coordinate: {value!r}") from exc


def _item(value: Any, i: int, where: str) -> Any:
    """``value[i]`` as upstream indexes it: lists and strings index; anything else raises."""
    if isinstance(value, dict):
        raise AnswerParseError(f"{where}: expected a list (or string) of coordinates, got an object")
    try:
        return value[i]
    except IndexError as exc:
        raise AnswerParseError(f"{where}: expected at least {i + 1} entries (2 numbers), got {_short(json.dumps(value))}") from exc
    except TypeError as exc:
        raise AnswerParseError(f"{where}: expected a list (or string) of coordinates, got {_short(json.dumps(value))}") from exc


def _round(value: int, factor: float, where: str) -> int:
    """``round(int(v) * factor)``; an int too large for a float raises OverflowError upstream."""
    try:
        return round(value * factor)
    except OverflowError as exc:
        raise AnswerParseError(f"{where}: coordinate out of range: {value!r}") from exc


def parse_single(text: str | None, x_factor: float, y_factor: float) -> Parsed:
    """A ``{"bbox": [...], "points_1": [...], "points_2": [...]}`` answer (Seg-Zero `evaluation.py`, `infer.py`)."""
    if not text:
        raise AnswerParseError("the model output is empty")
    match = FIRST_OBJECT.search(text)
    if match is None:
        raise AnswerParseError("no {...} object in the model output")
    answer = match.group(0)
    try:
        data = json.loads(answer)
    except json.JSONDecodeError as exc:
        raise AnswerParseError(f"the answer is not valid JSON ({exc.msg} at char {exc.pos}): {_short(answer)!r}") from exc
    if not isinstance(data, dict):  # '{...}' that parses is always an object; kept for clarity
        raise AnswerParseError("the answer must be a JSON object")
    bbox_key = next((k for k in data if "bbox" in k.lower()), None)
    if bbox_key is None:
        raise AnswerParseError(f"no key containing 'bbox' (keys: {', '.join(data) or 'none'})")
    raw_box = data[bbox_key]
    # upstream: ``len(data[bbox_key]) == 4`` then ``int(content_bbox[i])``; a 4-character string such as
    # "1234" passes and reads as [1, 2, 3, 4]; len() of a number raises; a dict's [0] raises KeyError
    try:
        n_box = len(raw_box)
    except TypeError as exc:
        raise AnswerParseError(f"{bbox_key!r} must have 4 entries, got {_short(json.dumps(raw_box))}") from exc
    if n_box != 4:
        raise AnswerParseError(f"{bbox_key!r} must have 4 entries (4 numbers), got {_short(json.dumps(raw_box))}")
    bx = [_int_of(_item(raw_box, i, bbox_key), bbox_key) for i in range(4)]
    box = (_round(bx[0], x_factor, bbox_key), _round(bx[1], y_factor, bbox_key),
           _round(bx[2], x_factor, bbox_key), _round(bx[3], y_factor, bbox_key))
    point_keys = [k for k in data if "points" in k.lower()][:2]
    if len(point_keys) != 2:
        raise AnswerParseError(f"expected two keys containing 'points', got {len(point_keys)}")
    points: list[IntPoint] = []
    for key in point_keys:
        # upstream: ``int(point[0])``, ``int(point[1])`` with no length check: "12" -> [1, 2], "123" -> [1, 2]
        raw = data[key]
        px, py = _int_of(_item(raw, 0, key), key), _int_of(_item(raw, 1, key), key)
        points.append((_round(px, x_factor, key), _round(py, y_factor, key)))
    return Parsed((SamPrompt(box, tuple(points)),), answer)


def union_box(prompts: tuple[SamPrompt, ...]) -> tuple[float, float, float, float] | None:
    """The box enclosing every object's box (each box's corners ordered first); None for none."""
    if not prompts:
        return None
    xs1 = [min(p.box[0], p.box[2]) for p in prompts]
    ys1 = [min(p.box[1], p.box[3]) for p in prompts]
    xs2 = [max(p.box[0], p.box[2]) for p in prompts]
    ys2 = [max(p.box[1], p.box[3]) for p in prompts]
    return (float(min(xs1)), float(min(ys1)), float(max(xs2)), float(max(ys2)))
