"""Score predictions a user already has: ``--models replay:PATH``.

How the outputs of an upstream script (LENS's, LISA's, anything) enter the harness. PATH is a
JSONL file with one object per line (a stable contract other tools rely on)::

    {"id": SAMPLE_ID, "mask": {"size": [h, w], "counts": "<COCO RLE string>"},
     "box": [x1, y1, x2, y2], "text": "..."}

or, for a model that finds every instance of a concept (SA-Co/Gold), instead of or besides ``mask``::

    {"id": SAMPLE_ID, "instances": [{"mask": RLE, "score": 0.93, "box": [x1, y1, x2, y2]}, ...]}

(an instance's ``box`` is optional; ``"instances": []`` says "none found"). Where a suite scores one
mask, an instances-only line is scored on the union of its instances at the suite's
``instance_threshold`` (harness/score/instances.py).
``box`` (original pixels) and ``text`` are optional; a ``<think>``/``<answer>`` text is split
into reasoning and answer, and its ``parse_status`` is what an in-process model gets from the
harness's one parser (``harness.answer.parse_bbox_answer``): ``ok`` when the answer parses,
``failed`` when a tagged text's answer is missing or does not parse, ``none`` for a text without
tags or no text. A line's own ``"parse_status"`` (``ok``, ``failed``, ``none``) wins.
An id absent from the file is a failed prediction, scored by the
suite's failure policy. ``"mask": null`` with an ``"error"`` records a failure the upstream saw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.answer import AnswerParseError, parse_bbox_answer, split_reasoning
from harness.errors import HarnessError
from harness.types import Instance, ParseStatus, Prediction, Query, validate_instances


class ReplayError(HarnessError):
    """A replay file that cannot be used; names the file and line."""


_STATUSES = {s.value for s in ParseStatus}


def parse_status_of(text: Any, stated: Any = None) -> ParseStatus:
    """The parse status of a replayed text, as the in-process parse would give it (see the module docstring)."""
    if stated is not None:
        return ParseStatus(stated)
    if not isinstance(text, str):
        return ParseStatus.NONE
    reasoning, answer = split_reasoning(text)
    if answer is None and reasoning is None and "<answer>" not in text and "<think>" not in text:
        return ParseStatus.NONE  # not the tagged format: nothing the harness's parser can judge
    try:
        parse_bbox_answer(answer)
    except AnswerParseError:
        return ParseStatus.FAILED
    return ParseStatus.OK


def load_replay_file(path: Path) -> dict[str, dict[str, Any]]:
    """Read a replay JSONL into id -> record, with errors that name the file and line."""
    if not path.is_file():
        raise ReplayError(f"replay file {path} does not exist")
    records: dict[str, dict[str, Any]] = {}
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:  # a binary file (gzip, parquet, a .pt): named, never a traceback
                raise ReplayError(f"{path}:{lineno}: not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                                  "a replay file is JSONL, one JSON object per line (decompress it first?)") from exc
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReplayError(f"{path}:{lineno}: not valid JSON ({exc.msg}); is the line truncated?") from exc
            if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
                raise ReplayError(f"{path}:{lineno}: each line must be an object with a string 'id'")
            if "mask" not in rec and "instances" not in rec:
                raise ReplayError(f"{path}:{lineno}: record {rec['id']!r} has no 'mask' nor 'instances' "
                                  "(use \"mask\": null for a failed prediction)")
            _check_instances(rec.get("instances"), f"{path}:{lineno}")
            box = rec.get("box")
            if box is not None and not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
                raise ReplayError(f"{path}:{lineno}: 'box' must be [x1, y1, x2, y2] numbers, got {box!r}")
            if rec.get("parse_status") is not None and rec["parse_status"] not in _STATUSES:
                raise ReplayError(f"{path}:{lineno}: 'parse_status' must be one of {', '.join(sorted(_STATUSES))}, "
                                  f"got {rec['parse_status']!r}")
            if rec["id"] in records:
                raise ReplayError(f"{path}:{lineno}: id {rec['id']!r} appears twice")
            rec["_where"] = f"{path}:{lineno}"
            records[rec["id"]] = rec
    return records


def _check_instances(found: Any, where: str) -> None:
    """A line's ``instances``: a list of objects, each with an RLE-shaped mask, a numeric score and an optional box."""
    if found is None:
        return
    if not isinstance(found, list):
        raise ReplayError(f"{where}: 'instances' must be a list of {{\"mask\": RLE, \"score\": number}}, got {type(found).__name__}")
    for k, inst in enumerate(found):
        if not isinstance(inst, dict) or not isinstance(inst.get("mask"), dict):
            raise ReplayError(f"{where}: instance {k} must be an object with a 'mask' (COCO RLE)")
        score = inst.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise ReplayError(f"{where}: instance {k} needs a numeric 'score', got {score!r}")
        box = inst.get("box")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise ReplayError(f"{where}: instance {k}: 'box' must be [x1, y1, x2, y2] numbers, got {box!r}")


class ReplayAdapter(Adapter):
    info = AdapterInfo(
        name="replay",
        description="scores predictions from a JSONL file (replay:PATH)",
        outputs=("mask", "instances", "box", "text", "reasoning"),
    )
    model_thread = False  # stored answers: nothing to overlap (harness.adapter)

    def __init__(self, arg: str | None = None, path: str | None = None) -> None:
        given = path or arg
        if not given:
            raise ReplayError("the replay adapter needs a file: --models replay:PATH")
        self.path = Path(given).expanduser()
        self.options = {"path": str(self.path)}
        self._records: dict[str, dict[str, Any]] | None = None

    def check(self) -> None:
        """Read and validate the whole file before any model predicts (it is read once)."""
        self._records = load_replay_file(self.path)
        if not self._records:  # every sample would fail: the wrong file, not a result
            raise ReplayError(f"{self.path}: the replay file holds no predictions")

    def load(self, device: str = "cpu") -> None:
        if self._records is None:
            self._records = load_replay_file(self.path)

    def replay_ids(self) -> set[str]:
        """The ids the file holds (after check or load): the runner checks them against the suite."""
        return set(self._records or {})

    def config(self) -> dict[str, Any]:
        # The file's content, not just its name, identifies what is being scored.
        import hashlib

        digest = hashlib.sha256(self.path.read_bytes()).hexdigest() if self.path.is_file() else None
        return {**super().config(), "file_sha256": digest}

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        if self._records is None:
            self.load()
        assert self._records is not None
        h, w = image.shape[:2]
        out = []
        for q in queries:
            rec = self._records.get(q.id)
            if rec is None:
                out.append(Prediction(mask=None, error=f"no prediction for this id in {self.path}"))
                continue
            text = rec.get("text")
            reasoning, answer = split_reasoning(text) if isinstance(text, str) else (None, None)
            status = parse_status_of(text, rec.get("parse_status"))
            found = rec.get("instances")
            if rec.get("mask") is None and found is None:
                out.append(Prediction(mask=None, text=text, reasoning=reasoning, answer=answer, parse_status=status,
                                      error=str(rec.get("error") or f"{rec['_where']}: mask is null")))
                continue
            try:
                mask = masks.validate(rec["mask"], h, w, rec["_where"]) if rec.get("mask") is not None else None
                instances = None if found is None else validate_instances(
                    [Instance.from_json(i) for i in found], h, w, rec["_where"])
            except masks.MaskError as exc:  # one bad mask fails its sample, not the batch
                out.append(Prediction(mask=None, text=text, reasoning=reasoning, answer=answer, parse_status=status,
                                      error=str(exc)))
                continue
            box = tuple(float(v) for v in rec["box"]) if rec.get("box") is not None else None
            out.append(Prediction(mask=mask, box=box, text=text, reasoning=reasoning, answer=answer,  # type: ignore[arg-type]
                                  parse_status=status, instances=instances))
        return out
