"""The scoring version: which scoring code and conventions produced the scores stored in a log.

A log line's ``score`` is derived from its ``prediction`` and the suite's ground truth; it is
never more trusted than the mask it came from. Which version each log of a run was scored under
is recorded and checked by harness/records/versions.py.

The version is a fingerprint of behaviour, not of source text: the conventions, a revision
number bumped by hand, and the exact SampleScores of a few hand-built masks (failures, empty
unions, ignore pixels, overlapping polygons, boxes) scored by the code that is running. A
change that alters any of those scores changes the version without anyone remembering to bump
it; a refactor that changes none keeps old runs valid.
"""

from __future__ import annotations

import functools
import hashlib
import json

import numpy as np

from harness import masks
from harness.data.conventions import Conventions
from harness.score.scoring import score_sample
from harness.types import GroundTruth, Instance, ParseStatus, Prediction

# Bump when scoring changes in a way the probe below might not see (e.g. a new SampleScore field).
SCORING_REVISION = 1


def _rect(rows: slice, cols: slice, h: int = 6, w: int = 8) -> masks.RLE:
    a = np.zeros((h, w), dtype=np.uint8)
    a[rows, cols] = 1
    return masks.encode(a)


def _probe_cases() -> list[tuple[Prediction, GroundTruth, bool]]:
    """Hand-built predictions and ground truths that reach every branch of score_sample."""
    target = GroundTruth(mask=_rect(slice(1, 4), slice(1, 5)), box=(1.0, 1.0, 5.0, 4.0),
                         ignore=_rect(slice(5, 6), slice(0, 8)), overlap=_rect(slice(2, 3), slice(2, 4)))
    plain = GroundTruth(mask=_rect(slice(0, 3), slice(0, 3)))
    nothing = GroundTruth(mask=masks.empty(6, 8))
    ok, failed = ParseStatus.OK, ParseStatus.FAILED
    pairs = [
        (Prediction(mask=_rect(slice(0, 3), slice(2, 7)), box=(2.0, 0.0, 7.0, 3.0), parse_status=ok), target),  # overlap pixels
        (Prediction(mask=_rect(slice(3, 6), slice(0, 3))), target),  # over ignore pixels, no box
        (Prediction(mask=_rect(slice(1, 4), slice(1, 5)), box=(-1.0, 1.0, 5.0, 4.0)), target),  # a bad box (the box rule)
        (Prediction(mask=None, parse_status=failed, error="probe"), target),  # a failure on a target
        (Prediction(mask=_rect(slice(1, 2), slice(1, 2))), plain),
        (Prediction(mask=masks.empty(6, 8)), nothing),  # empty union
        (Prediction(mask=_rect(slice(0, 1), slice(0, 8))), nothing),  # a mask where there is no target
        (Prediction(mask=None, error="probe"), nothing),  # a failure on no target
    ]
    # The third element is the dataset's no-target flag: the empty-union rules read it, not the area.
    cases = [(pred, gt, gt is nothing) for pred, gt in pairs]
    cases.append((Prediction(mask=masks.empty(6, 8)), nothing, False))  # a targeted sample whose target is empty
    return cases


def _instance_cases() -> list[tuple[Prediction, GroundTruth, bool]]:
    """Instance predictions against three annotators (suites scored on instances): the union, the score
    threshold, the one-to-one matching, the oracle's choice, a one-mask model, a negative pair."""
    a, b, c = _rect(slice(0, 3), slice(0, 3)), _rect(slice(0, 3), slice(4, 8)), _rect(slice(3, 6), slice(0, 4))
    wide = _rect(slice(0, 3), slice(0, 6))
    pair = GroundTruth(mask=masks.union([a, b], 6, 8), instances=((a, b), (wide,), ()))
    none = GroundTruth(mask=masks.empty(6, 8), instances=((), (), ()))
    found = (Instance(a, 0.9), Instance(b, 0.6), Instance(c, 0.4), Instance(wide, 0.5))
    return [(Prediction(mask=None, instances=found), pair, False),
            (Prediction(mask=None, instances=()), pair, False),
            (Prediction(mask=wide), pair, False),
            (Prediction(mask=None, instances=found[2:3]), none, True),
            (Prediction(mask=masks.empty(6, 8)), none, True)]


@functools.lru_cache(maxsize=16)
def scoring_version(conv: Conventions) -> str:
    """``<revision>:<12 hex>``: the same in every process for the same code and conventions."""
    cases = _probe_cases() + (_instance_cases() if conv.scoring == "instances" else [])
    probe = [score_sample(pred, gt, conv, no_target).to_json() for pred, gt, no_target in cases]
    payload = {"revision": SCORING_REVISION, "conventions": conv.to_dict(), "probe": probe}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{SCORING_REVISION}:{digest[:12]}"
