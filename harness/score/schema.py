"""The written contract of ``results.json`` (versioned). Other tools (gates, leaderboards) read it.

Version 1:

- every metric is in **percent** (0-100), like the papers; ``unit`` says so;
- ``results[model][split]`` always holds ``n`` (samples scored), ``n_records`` (predictions
  stored), ``n_failed``, ``n_ciou`` and ``n_giou`` (samples entering each metric), and, when
  at least one stored record was drawn, ``ciou``, ``giou``, ``parse_failure_rate`` and, when at least one sample
  enters gIoU, ``prec@0.5`` ... ``prec@0.9``;
- ``ciou_ci95`` / ``giou_ci95``: percentile bootstrap 95% intervals (1,000 resamples of
  samples, seed 0), present when n >= 2;
- box metrics (``box_acc@0.5``, ``box_miou``, ``n_box``) only where ground-truth boxes exist;
  the box rule (harness/score/scoring.py ``bad_box``): a stated box with a non-finite or negative
  coordinate, or with x2 < x1 or y2 < y1, fails the box metric (box IoU 0: a miss in
  ``box_acc@0.5``, 0 in ``box_miou``) and keeps its mask's score; ``n_bad_box`` counts such
  predictions (drawn samples), only where there are any (added within version 1; the per-sample
  ``score.bad_box`` flag marks them, and a non-finite coordinate is logged as ``null``);
  no-target metrics (``n_acc``, ``t_acc``, ``n_no_target``; ``fp_rate``, the share of no-target
  samples given a non-empty mask; ``exist_acc``, SESAME's "See" accuracy: every sample whose answer,
  a mask or none, agrees with the dataset's flag) only where samples the dataset flags no-target exist;
  ``n_targeted_empty_gt`` only where targeted samples have an empty ground truth;
- ``n_not_drawn``: records of samples the model's protocol deliberately left out (GLaMM's
  seeded draw), only where there are any; they count in ``n_records`` and nowhere else (not
  in ``n``, ``n_failed`` or any metric);
- ``conventions`` are the scoring conventions every number above was computed with;
  ``scoring_version`` (harness/score/version.py) names the scoring code and conventions the
  per-sample scores came from (absent in files written before it existed);
- ``n_expected`` is the number of samples the split has (after ``--limit``), ``n_split`` the
  whole split's size (before ``--limit``); ``complete`` is true only for the whole split with
  every sample predicted and none failed, and ``incomplete`` lists why not: ``limit`` (a
  ``--limit`` run: ``n_expected`` < ``n_split``), ``missing`` (``n_records`` < ``n_expected``:
  samples without a prediction, shards not merged), ``failed`` (``n_failed`` > 0).
- ``reasoning`` (its own ``version``, harness/score/reasoning.py), only when some model wrote
  text: per model x split with text, answer-format share, reasoning length, stated box vs mask
  agreement and accuracy split by it; absent for mask-only runs.

Added within version 1 for suites scored on instances (conventions ``scoring: instances``, SA-Co/Gold;
readers must not require them): per split ``n_cgf1`` (pairs scored on instances), SA-Co's metrics named
as upstream names them, lower-cased, with ``pmf1`` for positive_micro_F1 (``cgf1``, ``pmf1``, ``il_mcc``,
``precision``, ``recall``, ``f1``, ``positive_macro_f1``, ``positive_micro_precision``, each also at
``@0.5`` and ``@0.75``; ``il_precision``, ``il_recall``, ``il_f1``, ``il_fpr``), all in percent except
``il_mcc``, a correlation in [-1, 1] as SA-Co publishes it, and ``cgf1_ci95``, ``pmf1_ci95``,
``il_mcc_ci95`` (harness/score/cgf1.py); ``average`` = ``{"splits": [...], "results": model -> the mean
of each of those metrics over the splits, n_cgf1, n_splits, and intervals}`` where the suite declares an
average, for each model with every one of its splits. Conventions added after version 1 (``scoring``,
``instance_threshold``) appear in ``conventions`` only where a suite sets them.

Added within version 1 (readers must not require it): ``slices`` = ``{"version": 1,
"definitions": {...}, "results": model -> split -> family -> label -> {n, n_expected, ciou, giou,
ciou_ci95, giou_ci95, ...}}``: the metrics per slice of the samples (harness/score/slices.py,
definitions in suites/slices/). A slice with fewer than ``definitions.min_n`` scored samples
has no ``*_ci95``.
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
    n_split: int
    complete: bool
    incomplete: list[str]
    n_failed: int
    n_not_drawn: int
    n_ciou: int
    n_giou: int
    ciou: float
    giou: float
    ciou_ci95: list[float]
    giou_ci95: list[float]
    parse_failure_rate: float
    n_box: int
    n_bad_box: int
    n_no_target: int
    n_targeted_empty_gt: int
    n_acc: float
    t_acc: float
    fp_rate: float
    exist_acc: float
    n_cgf1: int  # suites scored on instances (harness/score/cgf1.py): their metrics ride along under their own names
    cgf1: float
    pmf1: float
    il_mcc: float


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
    scoring_version: str  # always written; files from before it existed lack it (read with .get)
    models: dict[str, dict[str, Any]]
    results: dict[str, dict[str, SplitResult]]
    published: list[PublishedRow]


class Results(_RequiredResults, total=False):
    slices: dict[str, Any]  # added within version 1: readers must not require them
    reasoning: dict[str, Any]
    average: dict[str, Any]


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
