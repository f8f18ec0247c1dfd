"""What a model's reasoning is worth, from the logs alone (results.json ``"reasoning"``, version 1).

A reasoning model writes text (a chain of thought and an answer that states a box) and then a
mask. Three questions: does it answer in the expected format, how much does it think, and does
its mask do what its answer says? Definitions (also in docs/conventions.md, "What the reasoning is worth"):

- a sample *has text* when ``prediction.text`` is a non-empty string; a model x split without
  any such sample gets no entry at all (a mask-only model has no section, not zeros);
- ``format_ok``: 100 x the share of samples with text whose ``parse_status`` is ``ok``;
- reasoning length: the number of whitespace-separated words of ``prediction.reasoning``, over
  the samples with a non-empty reasoning (mean, median, max); ``generated_tokens_per_sample`` is
  the adapter's own ``generated_tokens`` counter over the engine's ``samples`` counter (manifest
  efficiency counters, summed over ranks), only where the adapter reports it;
- the *stated box* is ``prediction.box`` (pixel xyxy at original resolution); the mask's *tight
  box* is pycocotools' ``toBbox`` (x, y, w, h) turned into (x, y, x + w, y + h): continuous pixel
  edges, so a mask whose columns are c0..c1 inclusive spans x1 = c0, x2 = c1 + 1, the convention
  of ``masks.box_mask`` (pixel centres inside) and ``masks.box_iou`` (no +1);
- ``box_mask_iou`` of a sample: IoU of stated box and tight box; 0 when the mask is empty (a box
  was promised, nothing was segmented) or the box is bad (the box rule of harness.score.scoring);
  undefined (left out) without a stated box or without a
  mask (a failed prediction);
- the box and the mask *agree* when that IoU is >= ``AGREE_AT`` (0.5, the REC box-accuracy bar);
- ``largest_disagreements``: the ``KEEP_DISAGREEMENTS`` samples of lowest box-mask IoU (percent;
  ties broken by sample id) among those that disagree (IoU < ``AGREE_AT``), which the report's
  gallery shows; empty when every stated box agrees with its mask;
- ``by_agreement``: cIoU, gIoU (the mean per-sample IoU) and Prec@0.5, with n and bootstrap
  intervals as for a split, over the samples with text whose box and mask agree, disagree, and
  that cannot be compared (``no_box``: no box stated, as for an answer of "no object" or one that
  did not parse, or no mask, as for a failed prediction).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from harness import masks
from harness.data.conventions import Conventions
from harness.errors import HarnessError
from harness.score.metrics import summarize
from harness.score.scoring import bad_box
from harness.types import Box, Sample, SampleScore

REASONING_VERSION = 1
AGREE_AT = 0.5
GROUPS = ("agree", "disagree", "no_box")
GROUP_KEYS = ("n", "ciou", "giou", "ciou_ci95", "giou_ci95", "prec@0.5")
KEEP_DISAGREEMENTS = 24  # lowest box-mask IoUs kept per model x split, for the report's gallery


class ReasoningError(HarnessError):
    """A stored prediction whose box or mask cannot be read; names the log and the sample."""


def tight_box(rle: masks.RLE) -> Box | None:
    """The mask's tight box in pixel-edge xyxy (None for an empty mask); see the module docstring."""
    return masks.mask_box(rle)  # pycocotools toBbox: (x, y, w, h) -> (x, y, x + w, y + h)


def box_mask_iou(box: Sequence[float | None] | None, mask: masks.RLE | None) -> float | None:
    """IoU of the stated box with the mask's tight box; 0 for an empty mask or a bad box (the box rule,
    harness.score.scoring.bad_box; a non-finite coordinate is stored as null), None without box or mask."""
    if box is None or mask is None:
        return None
    x1, y1, x2, y2 = (math.nan if v is None else float(v) for v in box)
    if bad_box((x1, y1, x2, y2)):
        return 0.0
    tight = tight_box(mask)
    if tight is None:
        return 0.0
    return masks.box_iou((x1, y1, x2, y2), tight)


def word_count(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class Facts:
    """What one stored prediction says about its text (None where it has none)."""

    has_text: bool
    parse_ok: bool
    words: int | None
    box_mask_iou: float | None


def facts_of(record: Mapping[str, Any], where: str) -> Facts:
    """The per-sample facts of one log record; ``where`` names the log for errors."""
    pred = record.get("prediction") or {}
    text, reasoning = pred.get("text"), pred.get("reasoning")
    box, mask = pred.get("box"), cast("masks.RLE | None", pred.get("mask"))
    sid = record.get("id")
    if box is not None and not (  # null: a non-finite coordinate (JSON has no NaN), a bad box scored as such
        isinstance(box, (list, tuple)) and len(box) == 4 and all(v is None or isinstance(v, (int, float)) for v in box)
    ):
        raise ReasoningError(f"{where}: sample {sid!r}: prediction.box must be four numbers [x1, y1, x2, y2], got {box!r}")
    # Masks were validated when the run logged them (run/predict.py) and scored since; checking the
    # counts again would cost 10x the tight box itself, so only their shape is checked here.
    if mask is not None and not (
        isinstance(mask, dict) and isinstance(mask.get("counts"), str)
        and isinstance(mask.get("size"), list) and len(mask["size"]) == 2 and all(isinstance(v, int) for v in mask["size"])
    ):
        raise ReasoningError(f"{where}: sample {sid!r}: prediction.mask is not a COCO RLE with [height, width] size and string counts")
    try:
        iou = box_mask_iou(box, mask)
    except Exception as exc:  # pycocotools raises bare errors on garbage counts
        raise ReasoningError(f"{where}: sample {sid!r}: prediction.mask cannot be decoded ({exc}); "
                             "`harness rescore` checks every mask") from exc
    return Facts(
        has_text=isinstance(text, str) and bool(text.strip()),
        parse_ok=pred.get("parse_status") == "ok",
        words=word_count(reasoning) if isinstance(reasoning, str) and reasoning.strip() else None,
        box_mask_iou=iou,
    )


def group_of(f: Facts) -> str:
    if f.box_mask_iou is None:
        return "no_box"
    return "agree" if f.box_mask_iou >= AGREE_AT else "disagree"


def summarize_reasoning(
    facts: Mapping[str, Facts],
    scores: Mapping[str, SampleScore],
    samples: Sequence[Sample],
    conv: Conventions,
    bootstrap_rounds: int,
    tokens_per_sample: float | None = None,
) -> dict[str, Any] | None:
    """The entry of one model x split over the split's samples; None when none of them has text."""
    ids = [s.id for s in samples if s.id in facts and facts[s.id].has_text]
    if not ids:
        return None
    out: dict[str, Any] = {"n_text": len(ids)}
    n_ok = sum(facts[i].parse_ok for i in ids)
    out["n_format_ok"] = n_ok
    out["format_ok"] = 100.0 * n_ok / len(ids)
    lengths = np.array([facts[i].words for i in ids if facts[i].words is not None], dtype=np.float64)
    out["n_reasoning"] = int(lengths.size)
    if lengths.size:
        out["reasoning_words"] = {"mean": float(lengths.mean()), "median": float(np.median(lengths)), "max": int(lengths.max())}
    if tokens_per_sample is not None:
        out["generated_tokens_per_sample"] = tokens_per_sample
    ious = np.array([facts[i].box_mask_iou for i in ids if facts[i].box_mask_iou is not None], dtype=np.float64)
    out["n_box"] = int(ious.size)
    if ious.size:
        out["box_mask_iou"] = float(100.0 * ious.mean())
        out["n_agree"] = int((ious >= AGREE_AT).sum())
        out["agree"] = float(100.0 * (ious >= AGREE_AT).mean())
        # The report's gallery reads these, so it never decodes the whole log again.
        stated = sorted((v, i) for i in ids if (v := facts[i].box_mask_iou) is not None and v < AGREE_AT)
        out["largest_disagreements"] = [{"id": i, "box_mask_iou": 100.0 * v} for v, i in stated[:KEEP_DISAGREEMENTS]]
    groups: dict[str, dict[str, Any]] = {}
    for name in GROUPS:
        chosen = [scores[i] for i in ids if group_of(facts[i]) == name and i in scores]
        if chosen:
            res = summarize(chosen, conv, bootstrap_rounds=bootstrap_rounds)
            groups[name] = {k: res[k] for k in GROUP_KEYS if k in res}
    out["by_agreement"] = groups
    return out


def tokens_per_sample(manifest_entry: Mapping[str, Any], split: str) -> float | None:
    """generated_tokens / samples from a model's manifest efficiency counters (summed over ranks)."""
    ranks = ((manifest_entry.get("efficiency") or {}).get(split)) or {}
    tokens = sum(float(c.get("generated_tokens", 0)) for c in ranks.values())
    n = sum(float(c.get("samples", 0)) for c in ranks.values())
    has_counter = any("generated_tokens" in c for c in ranks.values())
    return tokens / n if has_counter and n > 0 else None


class ReasoningTap:
    """Collects the facts of text-writing samples while results.py reads each log once for its scores.

    A log is the slowest thing to read in a 20k-sample run; reading it a second time for this
    section would double results.json's cost, and a mask-only model would pay it for nothing.
    """

    def __init__(self) -> None:
        self.by_log: dict[tuple[str, str], dict[str, tuple[Facts, SampleScore]]] = {}

    def tap(self, model: str, split: str, records: Iterable[dict[str, Any]], samples: Sequence[Sample],
            where: Path | str) -> Iterator[dict[str, Any]]:
        """Pass the records on unchanged, keeping (facts, score) of the split's samples with text (last write wins)."""
        wanted = {s.id for s in samples}
        kept = self.by_log.setdefault((model, split), {})
        for rec in records:
            sid = rec.get("id")
            if sid in wanted:
                text = (rec.get("prediction") or {}).get("text")
                if isinstance(text, str) and text.strip():
                    kept[sid] = (facts_of(rec, str(where)), SampleScore.from_json(rec["score"]))
                else:
                    kept.pop(sid, None)  # a later record without text replaces an earlier one
            yield rec

    def section(self, samples: Mapping[str, list[Sample]], conv: Conventions, bootstrap_rounds: int,
                manifest: Mapping[str, Any]) -> dict[str, Any] | None:
        """results.json's ``"reasoning"`` block; None when no model wrote text on any split."""
        results: dict[str, dict[str, Any]] = {}
        for (model, split), kept in self.by_log.items():
            if not kept:
                continue
            facts = {sid: f for sid, (f, _) in kept.items()}
            scores = {sid: sc for sid, (_, sc) in kept.items()}
            entry = (manifest.get("models") or {}).get(model) or {}
            res = summarize_reasoning(facts, scores, samples[split], conv, bootstrap_rounds, tokens_per_sample(entry, split))
            if res is not None:
                results.setdefault(model, {})[split] = res
        if not results:
            return None
        return {"version": REASONING_VERSION, "agree_at": AGREE_AT, "results": results}
