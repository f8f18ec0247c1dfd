"""Adapters that look at everything they are given, for the no-answers tests (tests/test_no_answers.py).

``snoop`` walks what ``predict`` and ``inputs`` receive, recursively (attributes, dict keys and
values, list items), and reports every attribute name, string and number it reached in its
Prediction's text, so the tests can look for ground truth in it, in-process and in a worker.
``snoop-oracle`` does the same as a declared oracle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.types import Prediction, Query

ENTRY_POINTS = {"snoop": "helper_snoop:Snoop", "snoop-oracle": "helper_snoop:SnoopOracle"}


def reach(obj: Any) -> dict[str, list[Any]]:
    """Every attribute name / dict key, string and number reachable from ``obj`` (pixels excepted)."""
    names: set[str] = set()
    strings: set[str] = set()
    numbers: set[float] = set()
    seen: set[int] = set()

    def walk(x: Any) -> None:
        if isinstance(x, bool) or x is None:
            return
        if isinstance(x, (int, float)):
            numbers.add(float(x))
            return
        if isinstance(x, (str, bytes)):
            strings.add(x.decode("latin-1") if isinstance(x, bytes) else x)
            return
        if isinstance(x, np.ndarray) or id(x) in seen:  # the image: pixels, not answers
            return
        seen.add(id(x))
        if isinstance(x, dict):
            for k, v in x.items():
                names.add(str(k))
                walk(k)
                walk(v)
            return
        if isinstance(x, (list, tuple, set, frozenset)):
            for v in x:
                walk(v)
            return
        for name in dir(x):
            if name.startswith("__"):
                continue
            names.add(name)
            try:
                value = getattr(x, name)
            except AttributeError:
                continue
            if not callable(value):
                walk(value)

    walk(obj)
    return {"names": sorted(names), "strings": sorted(strings), "numbers": sorted(numbers)}


class Snoop(Adapter):
    info = AdapterInfo(name="snoop", description="reports everything it is given", outputs=("mask", "text"))
    inputs_seen: ClassVar[list[dict[str, list[Any]]]] = []

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        h, w = image.shape[:2]
        return [Prediction(mask=masks.empty(h, w), text=json.dumps(reach(q))) for q in queries]

    def inputs(self, image: np.ndarray, query: Query) -> dict[str, Any]:
        Snoop.inputs_seen.append(reach(query))
        return {"prompt": query.expression}


class SnoopOracle(Snoop):
    info = AdapterInfo(name="snoop-oracle", description="reports everything it is given, as an oracle", outputs=("mask", "text"),
                       oracle=True)
