"""The report's Reasoning section: results.json's ``"reasoning"`` block as tables, and a gallery of
the samples whose stated box and predicted mask disagree most (harness/score/reasoning.py defines both).

Absent when the run has no such block (no model wrote text). The gallery reuses the sample
gallery's panels (image, ground truth, the mask and the stated box in the model's colour) and adds the
two boxes and their IoU; only the picked samples' masks are decoded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.publish.report import gallery
from harness.score.reasoning import AGREE_AT, GROUPS, tight_box
from harness.types import Sample

DASH = "–"
GROUP_LABELS = {"agree": "box and mask agree", "disagree": "disagree", "no_box": "no box or no mask"}


def _pct(value: Any) -> str:
    return DASH if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.1f}"


def _num(value: Any) -> str:
    return DASH if value is None else f"{float(value):.1f}"


def tables(block: Mapping[str, Any], models: Sequence[str], splits: Sequence[str]) -> list[dict[str, Any]]:
    """One table per split: a row per model that wrote text on it (the others have no row)."""
    results: Mapping[str, Mapping[str, Any]] = block.get("results") or {}
    out = []
    for split in splits:
        rows = []
        for model in [m for m in models if m in results] + [m for m in results if m not in models]:
            res = results[model].get(split)
            if not res:
                continue
            words = res.get("reasoning_words") or {}
            groups = res.get("by_agreement") or {}
            cells = [
                str(res.get("n_text", 0)),
                _pct(res.get("format_ok")),
                _num(words.get("mean")),
                _num(words.get("median")),
                _num(res.get("generated_tokens_per_sample")),
                str(res.get("n_box", 0)),
                _pct(res.get("box_mask_iou")),
                _pct(res.get("agree")),
            ]
            for name in GROUPS:
                g = groups.get(name) or {}
                cells += [str(g["n"]) if g else "0", _pct(g.get("ciou")), _pct(g.get("giou"))]
            rows.append({"model": model, "cells": cells})
        if rows:
            out.append({"split": split, "rows": rows})
    return out


COLUMNS = ("n text", "format ok", "words mean", "words median", "tokens / sample", "n box", "box–mask IoU", "agree")
GROUP_COLUMNS = ("n", "cIoU", "gIoU")


def _box_text(box: Sequence[float | None] | None) -> str:
    return DASH if box is None else "[" + ", ".join("nan" if v is None else f"{float(v):.1f}" for v in box) + "]"


def wanted(block: Mapping[str, Any] | None) -> list[gallery.Key]:
    """Every sample the disagreement gallery may show, so the report reads just those records whole."""
    by_model = (block or {}).get("results") or {}
    return sorted({(split, str(d["id"])) for by_split in by_model.values() for split, res in by_split.items()
                   for d in res.get("largest_disagreements") or []})


def disagreements(
    block: Mapping[str, Any],
    index: Mapping[gallery.Key, Mapping[str, Mapping[str, Any]]],
    models: Sequence[str],
    samples: Mapping[str, Mapping[str, Sample]] | None,
    per_model: int,
    exif: str = "ignore",
    look: gallery.Look | None = None,
) -> list[dict[str, Any]]:
    """Per model with text, its ``per_model`` samples of lowest stated-box vs mask IoU over all splits,
    among those that disagree (IoU below ``AGREE_AT``); no entries for a model whose boxes all agree.

    The picks come from results.json (``largest_disagreements``, ties broken by sample id), so
    the log is not read a second time; the panels are the sample gallery's, for that model alone.
    """
    thumbs = gallery.Thumbnailer(exif=exif)  # the suite's image convention, as the sample gallery
    look = look or gallery.Look.of(models, {}, ())
    anchors: set[str] = set()  # ids apart from the sample gallery's ("reasoning-…"): one sample may be in both
    out = []
    for model in models:
        by_split = (block.get("results") or {}).get(model) or {}
        ranked = sorted(
            (float(d["box_mask_iou"]), str(d["id"]), split)
            for split, res in by_split.items()
            for d in res.get("largest_disagreements") or []
            if float(d["box_mask_iou"]) < 100.0 * AGREE_AT  # files written before the list kept only these
        )
        picks = [(split, sid) for _, sid, split in ranked if model in index.get((split, sid), {})][:per_model]
        if not picks:
            if any(res.get("n_box") for res in by_split.values()):  # it stated boxes, and none disagrees
                out.append({"model": model, "entries": []})
            continue
        iou_of = {(split, sid): v for v, sid, split in ranked}
        # build_entries draws panels per gallery category; one category holds this model's picks.
        (section,) = gallery.build_entries({"worst": picks}, index, [model], samples, thumbs, look=look,
                                           anchor_prefix=f"reasoning-{model}", anchors=anchors)
        for key, item in zip(picks, section["entries"], strict=True):
            pred = index[key][model].get("prediction") or {}
            mask = pred.get("mask")
            try:
                tight = _box_text(tight_box(mask)) if mask is not None else DASH
            except Exception:  # pycocotools raises bare errors on garbage; the report must still render
                tight = "unreadable mask"
            item["box_mask"] = {
                "iou": f"{iou_of[key]:.1f}%",
                "agree": iou_of[key] >= 100.0 * AGREE_AT,
                "stated": _box_text(pred.get("box")),
                "tight": tight,
            }
        out.append({"model": model, "entries": section["entries"]})
    return out


def section(
    block: Mapping[str, Any] | None,
    index: Mapping[gallery.Key, Mapping[str, Mapping[str, Any]]],
    models: Sequence[str],
    splits: Sequence[str],
    samples: Mapping[str, Mapping[str, Sample]] | None,
    per_model: int,
    exif: str = "ignore",
    look: gallery.Look | None = None,
) -> dict[str, Any] | None:
    """Template data for the Reasoning section, or None when results.json has no reasoning block."""
    if not block or not block.get("results"):
        return None
    with_text = [m for m in models if m in block["results"]] + [m for m in block["results"] if m not in models]
    return {
        "agree_at": block.get("agree_at", AGREE_AT),
        "columns": COLUMNS,
        "groups": [GROUP_LABELS[g] for g in GROUPS],
        "group_columns": GROUP_COLUMNS,
        "tables": tables(block, models, splits),
        "gallery": disagreements(block, index, with_text, samples, per_model, exif, look),
    }
