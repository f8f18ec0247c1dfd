"""One line of a prediction log: the one codec every writer and reader of a log goes through.

    {"id": ..., "expression": ..., "prediction": Prediction.to_json(), "score": SampleScore.to_json(),
     "oom_halvings": N (only when the batch was halved)}

The runner builds lines with ``build``, a log writes them with ``encode`` (``rescore`` rewrites them
with ``with_score``, byte for byte in the same format), the score index summarises them
(harness/records/score_index.py) and every reader asks the questions below of a parsed line, so
that "failed" means one thing everywhere:

- ``failed``: the model gave no mask (and no instances) for a sample it was asked (an error, a crash,
  a timeout), or the stored score says so. What ``--retry-failed`` redoes and results count as ``n_failed``.
- ``not_drawn``: the protocol did not draw the sample (GLaMM's seeded draw): no mask, not failed.
- ``parse_failed``: the model answered, but its answer could not be parsed (it may still have a mask).
- ``bad_answer``: failed or parse_failed, what the report lists as a failure beside the masks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from harness.types import Prediction, SampleScore

# One encoder for every line: json.dumps with options builds a new JSONEncoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def build(sample_id: str, expression: str, prediction: Prediction, score: SampleScore, oom_halvings: int = 0) -> dict[str, Any]:
    """The log record of one sample's scored prediction."""
    rec: dict[str, Any] = {"id": sample_id, "expression": expression, "prediction": prediction.to_json(), "score": score.to_json()}
    if oom_halvings:
        rec["oom_halvings"] = oom_halvings
    return rec


def encode(record: Mapping[str, Any]) -> bytes:
    """The bytes of one log line, newline included."""
    return (_ENCODER.encode(record) + "\n").encode("utf-8")


def with_score(record: Mapping[str, Any], score: dict[str, Any]) -> dict[str, Any]:
    """The record with another (derived) score, every other field as stored."""
    return {**record, "score": score}


def prediction_json(record: Mapping[str, Any]) -> dict[str, Any]:
    found = record.get("prediction")
    return found if isinstance(found, dict) else {}


def score_json(record: Mapping[str, Any]) -> dict[str, Any]:
    found = record.get("score")
    return found if isinstance(found, dict) else {}


def not_drawn(record: Mapping[str, Any]) -> bool:
    return prediction_json(record).get("status") == "not_drawn" or bool(score_json(record).get("not_drawn"))


def failed(record: Mapping[str, Any]) -> bool:
    """No mask and no instances for a sample the model was asked, or a stored score that says it failed."""
    pred = prediction_json(record)
    return (pred.get("mask") is None and pred.get("instances") is None and not not_drawn(record)) \
        or bool(score_json(record).get("failed"))


def parse_failed(record: Mapping[str, Any]) -> bool:
    return prediction_json(record).get("parse_status") == "failed" or bool(score_json(record).get("parse_failed"))


def bad_answer(record: Mapping[str, Any]) -> bool:
    """A failure the report lists: failed, or an answer that could not be parsed; never a sample not drawn."""
    return not not_drawn(record) and (failed(record) or parse_failed(record))


def error(record: Mapping[str, Any]) -> str | None:
    found = prediction_json(record).get("error")
    return None if found is None else str(found)


def without_mask(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with its prediction's masks left out (what a table of samples shows): an instance keeps
    its score and box."""
    pred = {k: v for k, v in prediction_json(record).items() if k != "mask"}
    if isinstance(pred.get("instances"), list):
        pred["instances"] = [{k: v for k, v in i.items() if k != "mask"} for i in pred["instances"] if isinstance(i, dict)]
    return {"id": str(record["id"]), "expression": record.get("expression"), "prediction": pred, "score": record.get("score")}
