"""What a model's text is worth: answer format, reasoning length, and whether the mask does what the answer says.

Computed from the stored predictions, only for models that write text, per model x split
(results.json ``"reasoning"``, version 1). Definitions:

- ``n_text``: samples whose answer the model was supposed to write in a parsable format
  (parse status ``ok`` or ``failed``; an adapter without a text answer says ``none`` and is left
  out); ``format_ok`` = 100 x share of those parsed (status ``ok``);
- ``n_reasoning``, ``reasoning_words_mean`` / ``_median``: over samples with a non-empty chain of
  thought (the ``<think>`` part), its length in words (the slices' word rule: runs of letters and
  digits). Token counts are not recorded by the harness, so none are given;
- ``box_mask_iou``: for samples whose answer states a box (the prediction's pixel box), the IoU
  of that box with the tight box of the predicted mask (0 when the mask is empty): does the model
  segment what it says? ``n_box_stated``, its mean (percent) and ``box_mask_agree`` = 100 x share
  with IoU >= ``AGREE_AT`` (0.5);
- ``by_agreement``: cIoU and gIoU (with n and, from ``min_n`` samples, a bootstrap interval) over
  the samples where stated box and mask agree, and where they do not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from harness import masks
from harness.data.conventions import Conventions
from harness.score.metrics import summarize
from harness.score.slices import RESULT_KEYS, words
from harness.types import Sample, SampleScore

REASONING_VERSION = 1
AGREE_AT = 0.5


def box_mask_iou(box: Sequence[float] | None, mask: masks.RLE | None) -> float | None:
    """IoU of a stated pixel box with the tight box of a mask; None without a stated box or a mask (failed)."""
    if box is None or mask is None:
        return None
    tight = masks.mask_box(mask)
    return 0.0 if tight is None else masks.box_iou((box[0], box[1], box[2], box[3]), tight)


def of_record(record: Mapping[str, Any]) -> tuple[str, int | None, float | None]:
    """(parse status, reasoning words or None, box-mask IoU or None) of one log record."""
    pred = record.get("prediction") or {}
    reasoning = pred.get("reasoning")
    n_words = len(words(reasoning)) if isinstance(reasoning, str) and reasoning.strip() else None
    return str(pred.get("parse_status", "none")), n_words, box_mask_iou(pred.get("box"), pred.get("mask"))


class Tally:
    """Collects the small per-sample facts while the log is read once for the scores (last write wins)."""

    def __init__(self, wanted: Iterable[str]) -> None:
        self.wanted = set(wanted)
        self.by_id: dict[str, tuple[str, int | None, float | None]] = {}

    def tap(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for r in records:
            if r.get("id") in self.wanted:
                self.by_id[r["id"]] = of_record(r)
            yield r

    def result(self, scores: Mapping[str, SampleScore], samples: Sequence[Sample], conv: Conventions, bootstrap_rounds: int,
               min_n: int) -> dict[str, Any] | None:
        """The section of one model x split; None when the model writes no text answer."""
        facts = [(s.id, self.by_id[s.id]) for s in samples if s.id in self.by_id]
        texts = [f for _, f in facts if f[0] in ("ok", "failed")]
        if not texts:
            return None
        out: dict[str, Any] = {"n_text": len(texts), "format_ok": 100.0 * sum(f[0] == "ok" for f in texts) / len(texts)}
        lengths = [f[1] for _, f in facts if f[1] is not None]
        out["n_reasoning"] = len(lengths)
        if lengths:
            out["reasoning_words_mean"] = float(np.mean(lengths))
            out["reasoning_words_median"] = float(np.median(lengths))
        stated = [(i, f[2]) for i, f in facts if f[2] is not None]
        out["n_box_stated"] = len(stated)
        if stated:
            ious = np.array([v for _, v in stated])
            out["box_mask_iou"] = float(100.0 * ious.mean())
            out["box_mask_agree"] = float(100.0 * (ious >= AGREE_AT).mean())
            groups = {"agree": [i for i, v in stated if v >= AGREE_AT], "disagree": [i for i, v in stated if v < AGREE_AT]}
            out["by_agreement"] = {}
            for name, ids in groups.items():
                chosen = [scores[i] for i in ids if i in scores]
                if not chosen:
                    continue
                res = summarize(chosen, conv, bootstrap_rounds=bootstrap_rounds if len(chosen) >= min_n else 0)
                if res["n"] < min_n:  # too few for an honest interval, as for slices
                    res = {k: v for k, v in res.items() if not k.endswith("_ci95")}
                out["by_agreement"][name] = {k: res[k] for k in RESULT_KEYS if k in res}
        return out
