"""The written contract of ``results.json`` (versioned). Other tools (gates, leaderboards) read it.

Version 1:

- every metric is in **percent** (0-100), like the papers; ``unit`` says so;
- ``results[model][split]`` always holds ``n`` (samples scored), ``n_records`` (predictions
  stored), ``n_failed``, ``n_ciou`` and ``n_giou`` (samples entering each metric), and, when
  ``n_records > 0``, ``ciou``, ``giou``, ``parse_failure_rate`` and, when at least one sample
  enters gIoU, ``prec@0.5`` ... ``prec@0.9``;
- ``ciou_ci95`` / ``giou_ci95``: percentile bootstrap 95% intervals (1,000 resamples of
  samples, seed 0), present when n >= 2;
- box metrics (``box_acc@0.5``, ``box_miou``, ``n_box``) only where ground-truth boxes exist;
  no-target metrics (``n_acc``, ``t_acc``, ``n_no_target``) only where no-target samples exist;
- ``conventions`` are the scoring conventions every number above was computed with;
- ``n_expected`` is the number of samples the split has (after ``--limit``); ``complete`` is
  true when every one of them has a stored prediction.

Added within version 1 (readers must not require it): ``slices`` = ``{"version": 1,
"definitions": {...}, "results": model -> split -> family -> label -> {n, n_expected, ciou, giou,
ciou_ci95, giou_ci95, ...}}``: the metrics per slice of the samples (harness/score/slices.py,
definitions in benchmarks/slices/). A slice with fewer than ``definitions.min_n`` scored samples
has no ``*_ci95``.

Also added within version 1: ``reasoning`` = ``{"version": 1, "results": model -> split -> {n_text,
format_ok, n_reasoning, reasoning_words_mean, reasoning_words_median, n_box_stated, box_mask_iou,
box_mask_agree, by_agreement: {agree, disagree}}}``, only for models that write a text answer
(definitions in harness/score/reasoning.py).
"""

from __future__ import annotations

from typing import Any, TypedDict

from harness.errors import HarnessError

SCHEMA_NAME = "harness.results"
SCHEMA_VERSION = 1


class SplitResult(TypedDict, total=False):
    n: int
    n_records: int
    n_expected: int
    complete: bool
    n_failed: int
    n_ciou: int
    n_giou: int
    ciou: float
    giou: float
    ciou_ci95: list[float]
    giou_ci95: list[float]
    parse_failure_rate: float
    n_box: int
    n_no_target: int
    n_acc: float
    t_acc: float


class PublishedRow(TypedDict):
    model: str
    split: str
    metric: str
    value: float
    source: str


class _RequiredResults(TypedDict):
    schema: str
    schema_version: int
    unit: str
    run_id: str
    suite: dict[str, Any]
    conventions: dict[str, Any]
    models: dict[str, dict[str, Any]]
    results: dict[str, dict[str, SplitResult]]
    published: list[PublishedRow]


class Results(_RequiredResults, total=False):
    slices: dict[str, Any]  # added within version 1: readers must not require them
    reasoning: dict[str, Any]


def check_results(data: Any, where: str) -> Results:
    """Validate the parts of a results.json every reader relies on; raise naming the file."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
        raise HarnessError(f"{where}: not a harness results file (schema {SCHEMA_NAME!r} expected)")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise HarnessError(f"{where}: schema_version {data.get('schema_version')!r}, this harness reads {SCHEMA_VERSION}")
    for model, splits in data.get("results", {}).items():
        for split, res in splits.items():
            if not isinstance(res, dict) or "n" not in res:
                raise HarnessError(f"{where}: results[{model!r}][{split!r}] lacks 'n'")
    return data  # type: ignore[return-value]
