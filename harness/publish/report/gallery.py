"""The sample gallery: which samples to show, and their overlay thumbnails.

Aggregate numbers say how good a model is; the gallery shows *why*: the samples all models
miss, the ones they nail, the ones they disagree on, and the answers that could not be
parsed. Picks are deterministic (ties broken by sample id) so two renders of one run show
the same samples. Only the picked samples' masks are decoded, which keeps a 20k-sample run
fast to render.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from harness import masks
from harness.data.conventions import Conventions
from harness.data.images import ImageError, load_image
from harness.records import logline
from harness.records.score_index import IndexEntry
from harness.score.instances import scored_mask
from harness.types import RLE, Prediction, Sample

Key = tuple[str, str]  # (split, sample id)

CATEGORIES: dict[str, str] = {
    "worst": "Lowest mean IoU across models",
    "best": "Highest mean IoU across models",
    "disagreed": "Largest spread of IoU across models (max − min)",
    "failures": "A model's answer could not be parsed, or its prediction failed",
}
THUMB_WIDTH = 256
_GT_RGB = np.array([40, 200, 80], dtype=np.float64)
_PRED_RGB = np.array([230, 40, 40], dtype=np.float64)
_BOX_RGB = (255, 200, 0)


def sample_iou(record: Mapping[str, Any] | IndexEntry) -> float | None:
    """The per-sample IoU that entered gIoU (None when the sample was left out)."""
    if isinstance(record, IndexEntry):  # the log's score index: the same fields, without the mask
        value = record.value("iou")
    else:
        value = (record.get("score") or {}).get("iou")
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def is_failure(record: Mapping[str, Any] | IndexEntry) -> bool:
    """What the gallery counts as a failure: ``bad_answer`` as harness/records/logline.py defines it."""
    return record.bad_answer if isinstance(record, IndexEntry) else logline.bad_answer(record)


def _across_splits(ranked: Sequence[Key], n: int, taken: set[Key]) -> list[Key]:
    """The first ``n`` of ``ranked`` not already shown, taken from each split in turn (best-ranked first
    within a split), so that every split the gallery covers shows samples."""
    queues: dict[str, list[Key]] = {}
    for key in ranked:
        if key not in taken:
            queues.setdefault(key[0], []).append(key)
    out: list[Key] = []
    depth = 0
    while len(out) < n and any(depth < len(q) for q in queues.values()):
        out += [q[depth] for q in queues.values() if depth < len(q)][: n - len(out)]
        depth += 1
    taken.update(out)
    return out


# The order in which categories claim samples (no sample is shown twice): the most specific first.
_PRIORITY = ("failures", "disagreed", "worst", "best")


def select(index: Mapping[Key, Mapping[str, Mapping[str, Any] | IndexEntry]], per_category: int) -> dict[str, list[Key]]:
    """Pick up to ``per_category`` samples for each gallery category, deterministically.

    No sample appears in two categories (they claim samples in ``_PRIORITY`` order), and each
    category takes its samples from every split in turn. "disagreed" needs IoUs from at least two
    models and a non-zero spread. (The stated box against its mask has its own gallery, in the
    report's Reasoning section.)
    """
    stats: list[tuple[Key, float, float, int]] = []  # key, mean IoU, spread, number of failed models
    for key, by_model in index.items():
        ious = [v for v in (sample_iou(r) for r in by_model.values()) if v is not None]
        n_failed = sum(is_failure(r) for r in by_model.values())
        mean = sum(ious) / len(ious) if ious else math.nan  # plain floats: np.mean per sample cost seconds at 100k
        spread = float(max(ious) - min(ious)) if len(ious) >= 2 else math.nan
        stats.append((key, mean, spread, n_failed))

    def order(key: Key) -> tuple[str, str]:
        return key[1], key[0]  # ties broken by sample id, then split

    with_iou = [s for s in stats if not math.isnan(s[1])]
    ranked = {
        "worst": [s[0] for s in sorted(with_iou, key=lambda s: (s[1], order(s[0])))],
        "best": [s[0] for s in sorted(with_iou, key=lambda s: (-s[1], order(s[0])))],
        "disagreed": [s[0] for s in sorted((s for s in stats if not math.isnan(s[2]) and s[2] > 0), key=lambda s: (-s[2], order(s[0])))],
        "failures": [s[0] for s in sorted((s for s in stats if s[3]), key=lambda s: (-s[3], order(s[0])))],
    }
    taken: set[Key] = set()
    picks = {name: _across_splits(ranked[name], per_category, taken) for name in _PRIORITY}
    return {name: picks[name] for name in CATEGORIES}


@dataclass
class Thumbnailer:
    """Draws overlay thumbnails; caches each sample's downscaled image across models."""

    max_width: int = THUMB_WIDTH
    exif: str = "ignore"  # the run's image convention, so the image lines up with its ground truth
    _base: dict[Key, tuple[np.ndarray, float]] = field(default_factory=dict)

    def base(self, sample: Sample) -> tuple[np.ndarray, float]:
        """The sample's image as (thumbnail RGB array, scale), at the ground truth's size.

        An image that cannot be read becomes a grey canvas: the masks are still worth seeing.
        """
        key = (sample.split, sample.id)
        if key in self._base:
            return self._base[key]
        h, w = sample.gt.height, sample.gt.width
        scale = min(1.0, self.max_width / max(w, 1))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        try:
            rgb = Image.fromarray(load_image(sample.image, self.exif))
            if rgb.size != (w, h):  # masks are at original resolution: bring the image to it
                rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)
        except ImageError:
            arr = np.full((size[1], size[0], 3), 190, dtype=np.uint8)
        self._base[key] = (arr, scale)
        return arr, scale

    def overlay(self, sample: Sample, pred_mask: RLE | None = None, pred_box: Sequence[float] | None = None) -> str:
        """Image + ground truth (green tint and outline) + prediction (red tint, yellow box)."""
        base, scale = self.base(sample)
        th, tw = base.shape[:2]
        out = base.astype(np.float64)
        gt = _fit(masks.decode(sample.gt.mask), tw, th)
        if pred_mask is None:  # the ground-truth panel: tint it; model panels only outline it
            out[gt] = 0.55 * out[gt] + 0.45 * _GT_RGB
        pred = _decode_or_none(pred_mask, tw, th)
        if pred is not None:
            out[pred] = 0.5 * out[pred] + 0.5 * _PRED_RGB
            out[_edges(pred)] = _PRED_RGB
        out[_edges(gt)] = _GT_RGB
        img = Image.fromarray(out.clip(0, 255).astype(np.uint8))
        if pred_box is not None and len(pred_box) == 4 and None not in pred_box:  # null: a non-finite box, nothing to draw
            x1, y1, x2, y2 = (float(v) * scale for v in pred_box)
            if x2 > x1 and y2 > y1:
                ImageDraw.Draw(img).rectangle([x1, y1, x2, y2], outline=_BOX_RGB, width=2)
        # JPEG: the images are photographs (or noisy renders) and PNG makes the report ~5x larger.
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fit(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A full-resolution mask scaled (nearest) to the thumbnail's size."""
    if mask.shape == (height, width):
        return mask
    small = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    fitted: np.ndarray = np.asarray(small) > 127
    return fitted


def _decode_or_none(rle: RLE | None, width: int, height: int) -> np.ndarray | None:
    """A prediction's mask at thumbnail size; a malformed RLE is drawn as no mask, not a crash."""
    if rle is None:
        return None
    try:
        return _fit(masks.decode(rle), width, height)
    except Exception:  # pycocotools raises bare errors on garbage; the report must still render
        return None


def _edges(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a mask (mask minus its 4-neighbour erosion), for outlines."""
    if not mask.any():
        return mask
    p = np.pad(mask, 1)
    eroded = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~eroded


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100.0 * value:.1f}%"


def shown_mask(pred: Mapping[str, Any], sample: Sample, conv: Conventions) -> RLE | None:
    """The mask a panel draws: the prediction's mask, else the union of its instances at the suite's
    ``instance_threshold`` (what the mask metrics scored); None for a failed or unreadable prediction."""
    if pred.get("mask") is not None or pred.get("instances") is None:
        return pred.get("mask")  # type: ignore[no-any-return]
    try:
        return scored_mask(Prediction.from_json(dict(pred)), conv, sample.gt.height, sample.gt.width)
    except (KeyError, TypeError, ValueError, masks.MaskError):
        return None


def build_entries(
    picks: Mapping[str, Sequence[Key]],
    index: Mapping[Key, Mapping[str, Mapping[str, Any]]],
    models: Sequence[str],
    samples: Mapping[str, Mapping[str, Sample]] | None,
    thumbs: Thumbnailer | None = None,
    conventions: Conventions | None = None,
) -> list[dict[str, Any]]:
    """Template-ready gallery sections: one per category, each with its samples' panels.

    Everything here is plain data for the template, which escapes every string: expressions,
    reasoning and errors come from datasets and models and are never trusted as markup.
    """
    thumbs = thumbs or Thumbnailer()
    cache: dict[tuple[Key, str], str | None] = {}
    sections = []
    for category, keys in picks.items():
        items = []
        for key in keys:
            split, sid = key
            by_model = index.get(key, {})
            sample = (samples or {}).get(split, {}).get(sid)
            first = next(iter(by_model.values()), {})
            item: dict[str, Any] = {
                "split": split,
                "id": sid,
                "expression": first.get("expression") or (sample.expression if sample else ""),
                "no_target": bool(sample.no_target) if sample else bool((first.get("score") or {}).get("gt_empty")),
                "gt_image": thumbs.overlay(sample) if sample else None,
                "panels": [],
            }
            for model in models:
                rec = by_model.get(model)
                if rec is None:
                    continue
                pred = rec.get("prediction") or {}
                if sample is not None and (key, model) not in cache:
                    cache[(key, model)] = thumbs.overlay(sample, shown_mask(pred, sample, conventions or Conventions()), pred.get("box"))
                item["panels"].append(
                    {
                        "model": model,
                        "iou": _percent(sample_iou(rec)),
                        "image": cache.get((key, model)),
                        "reasoning": pred.get("reasoning"),
                        "answer": pred.get("answer"),
                        "text": pred.get("text"),
                        "error": pred.get("error"),
                        "parse_status": pred.get("parse_status") or "none",
                        "failed": is_failure(rec),
                        "not_drawn": logline.not_drawn(rec),
                    }
                )
            items.append(item)
        sections.append({"key": category, "title": CATEGORIES[category], "entries": items})
    return sections
