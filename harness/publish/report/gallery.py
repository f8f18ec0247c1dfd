"""The sample gallery: which samples to show, and their overlay thumbnails.

Aggregate numbers say how good a model is; the gallery shows *why*, with samples chosen to inform:
where the models disagree most, each model's worst failures, the answers that could not be parsed,
and a few typical samples per split. Reference lines (``empty``, ``full``, oracles:
``AdapterInfo.reference``) are drawn but never decide a pick while the run has real models, and a
no-target sample is shown only where some model got it wrong (most models get most of them right,
and a page of them says nothing). Picks are deterministic (ties broken by sample id) so two renders
of one run show the same samples. Only the picked samples' masks are decoded, which keeps a
20k-sample run fast to render.

Overlays stay visible on any image: each model's mask is a translucent fill with a contour in the
model's colour (harness/publish/colours.py, the same colour as in every plot), edged in black; the
ground truth is a dashed white-on-black outline; the stated box a rectangle in the model's colour.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from harness import masks
from harness.adapter import BoxSpace, box_from_pixels
from harness.data.conventions import Conventions
from harness.data.images import ImageError, load_image
from harness.publish.colours import model_colours
from harness.records import logline
from harness.records.score_index import IndexEntry
from harness.score.instances import scored_mask
from harness.types import RLE, Prediction, Sample

Key = tuple[str, str]  # (split, sample id)
Record = Mapping[str, Any] | IndexEntry

CATEGORIES: dict[str, str] = {
    "disagreed": "Where the models disagree most (largest spread of IoU, max − min)",
    "worst": "Each model's worst failures (its lowest IoU)",
    "failures": "A model's answer could not be parsed, or its prediction failed",
    "typical": "Typical samples per split (mean IoU nearest the split's median)",
}
THUMB_WIDTH = 256
FILL_ALPHA = 0.4  # the model's mask: translucent, so the object under it stays visible
_BLACK = np.array([0, 0, 0], dtype=np.float64)
_WHITE = np.array([255, 255, 255], dtype=np.float64)
DASH_PX = 4  # the ground truth's dashes: this many pixels white, then as many black


def sample_iou(record: Record) -> float | None:
    """The per-sample IoU that entered gIoU (None when the sample was left out)."""
    if isinstance(record, IndexEntry):  # the log's score index: the same fields, without the mask
        value = record.value("iou")
    else:
        value = (record.get("score") or {}).get("iou")
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def is_failure(record: Record) -> bool:
    """What the gallery counts as a failure: ``bad_answer`` as harness/records/logline.py defines it."""
    return record.bad_answer if isinstance(record, IndexEntry) else logline.bad_answer(record)


def is_no_target(record: Record) -> bool:
    """The dataset's no-target flag as scored (the empty ground truth in logs written before the flag)."""
    if isinstance(record, IndexEntry):
        flag, empty = record.value("no_target"), record.value("gt_empty")
    else:
        score = record.get("score") or {}
        flag, empty = score.get("no_target"), score.get("gt_empty")
    return bool(empty) if flag is None else bool(flag)


def _wrong(record: Record) -> bool:
    """The model did not get the sample fully right: a failure, or an IoU below 1."""
    iou = sample_iou(record)
    return is_failure(record) or (iou is not None and iou < 1.0)


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
_PRIORITY = ("failures", "disagreed", "worst", "typical")


def _pct(value: float) -> str:
    return f"{100.0 * value:.1f}%"


def select(
    index: Mapping[Key, Mapping[str, Record]], per_category: int, reference: Collection[str] = (),
) -> dict[str, dict[Key, str]]:
    """Pick up to ``per_category`` samples for each gallery category, deterministically, each with why
    it was picked: ``{category: {(split, id): reason}}`` (a dict: iterating it gives the keys, in order).

    No sample appears in two categories (they claim samples in ``_PRIORITY`` order), and each category
    takes its samples from every split in turn. The models that decide are those not in ``reference``
    (all of them when the run has no other). "disagreed" ranks by ``_disagreement`` (non-zero only);
    "worst" takes from each deciding model in turn its lowest IoUs; "typical" the samples of each split
    whose mean IoU is nearest the split's median. A no-target sample is eligible only where some
    deciding model got it wrong. (The stated box against its mask has its own gallery, in the report's
    Reasoning section.)
    """
    all_models = list(dict.fromkeys(m for by_model in index.values() for m in by_model))
    deciding = [m for m in all_models if m not in reference] or all_models

    def order(key: Key) -> tuple[str, str]:
        return key[1], key[0]  # ties broken by sample id, then split

    mean_of: dict[Key, float] = {}
    spread_of: dict[Key, float] = {}
    why_spread: dict[Key, str] = {}
    failed_of: dict[Key, int] = {}
    worst_of: dict[str, list[tuple[float, Key]]] = {m: [] for m in deciding}
    for key, by_model in index.items():
        judged = {m: r for m, r in by_model.items() if m in deciding}
        if any(is_no_target(r) for r in by_model.values()) and not any(_wrong(r) for r in judged.values()):
            continue  # a no-target sample every deciding model got right
        ious = {m: v for m, r in by_model.items() if (v := sample_iou(r)) is not None}
        decided = [v for m, v in ious.items() if m in deciding]
        if decided:
            mean_of[key] = sum(decided) / len(decided)  # plain floats: np.mean per sample cost seconds at 100k
        if (gap := _disagreement(ious, deciding)) is not None and gap[0] > 0:
            spread_of[key], why_spread[key] = gap
        if n_failed := sum(is_failure(r) for r in judged.values()):
            failed_of[key] = n_failed
        for m, v in ious.items():
            if m in worst_of and v < 1.0:
                worst_of[m].append((v, key))

    taken: set[Key] = set()
    picks: dict[str, dict[Key, str]] = {}
    ranked = sorted(failed_of, key=lambda k: (-failed_of[k], order(k)))
    picks["failures"] = {k: f"{failed_of[k]} model(s) failed or answered unparsably" for k in _across_splits(ranked, per_category, taken)}
    ranked = sorted(spread_of, key=lambda k: (-spread_of[k], order(k)))
    picks["disagreed"] = {k: why_spread[k] for k in _across_splits(ranked, per_category, taken)}
    picks["worst"] = _worst(worst_of, per_category, taken, order)
    picks["typical"] = _typical(mean_of, per_category, taken, order)
    return {name: picks[name] for name in CATEGORIES}


def _disagreement(ious: Mapping[str, float], deciding: Sequence[str]) -> tuple[float, str] | None:
    """How far apart the models are on one sample, and the phrase saying so. Among two or more deciding
    models: their spread (max − min). With one, reference lines would always disagree with it (``empty`` scores
    0 wherever it scores well), so the spread is its distance from the best reference line (the oracle)."""
    mine = {m: v for m, v in ious.items() if m in deciding}
    if len(mine) >= 2:
        hi, lo = max(mine, key=lambda m: mine[m]), min(mine, key=lambda m: mine[m])
        return mine[hi] - mine[lo], f"IoU spread {100.0 * (mine[hi] - mine[lo]):.1f} points ({hi} {_pct(mine[hi])}, {lo} {_pct(mine[lo])})"
    others = {m: v for m, v in ious.items() if m not in deciding}
    if len(mine) == 1 and others:
        (model, value), best = next(iter(mine.items())), max(others, key=lambda m: others[m])
        return abs(value - others[best]), f"{model} {_pct(value)} vs {best} {_pct(others[best])}"
    return None


def _worst(worst_of: Mapping[str, list[tuple[float, Key]]], n: int, taken: set[Key], order: Any) -> dict[Key, str]:
    """Each model's lowest IoUs, one model after another, until ``n`` samples are picked."""
    queues = {m: [k for _, k in sorted(v, key=lambda t: (t[0], order(t[1])))] for m, v in worst_of.items()}
    iou = {(m, k): v for m, vs in worst_of.items() for v, k in vs}
    out: dict[Key, str] = {}
    while len(out) < n and any(queues.values()):
        for m, queue in queues.items():
            while queue and queue[0] in taken:
                queue.pop(0)
            if queue and len(out) < n:
                key = queue.pop(0)
                taken.add(key)
                out[key] = f"worst of {m}: IoU {_pct(iou[(m, key)])}"
    return out


def _typical(mean_of: Mapping[Key, float], n: int, taken: set[Key], order: Any) -> dict[Key, str]:
    """Per split (in turn), the samples whose mean IoU over the deciding models is nearest the split's median."""
    by_split: dict[str, list[Key]] = {}
    for key in mean_of:
        by_split.setdefault(key[0], []).append(key)
    ranked: list[Key] = []
    median: dict[str, float] = {}
    for split, keys in by_split.items():
        values = sorted(mean_of[k] for k in keys)
        mid = len(values) // 2
        median[split] = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
        ranked += sorted(keys, key=lambda k: (abs(mean_of[k] - median[k[0]]), order(k)))
    return {k: f"mean IoU {_pct(mean_of[k])}, split median {_pct(median[k[0]])}" for k in _across_splits(ranked, n, taken)}


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

    def overlay(self, sample: Sample, pred_mask: RLE | None = None, pred_box: Sequence[float | None] | None = None,
                colour: str = "#0072B2") -> str:
        """Image + the prediction (translucent fill and contour in ``colour``, its box in ``colour``) + the
        ground truth (a dashed outline) as a JPEG data URI. Without a mask and a box: the ground-truth panel."""
        base, scale = self.base(sample)
        th, tw = base.shape[:2]
        out = base.astype(np.float64)
        gt = _fit(masks.decode(sample.gt.mask), tw, th)
        rgb = _rgb(colour)
        pred = _decode_or_none(pred_mask, tw, th)
        if pred is not None:
            out[pred] = (1.0 - FILL_ALPHA) * out[pred] + FILL_ALPHA * rgb
            contour = _dilate(_edges(pred))
            out[_dilate(contour) & ~contour] = _BLACK  # a black edge: the contour reads on a bright or same-coloured object
            out[contour] = rgb
        _dashed(out, _edges(gt))
        img = Image.fromarray(out.clip(0, 255).astype(np.uint8))
        if pred_box is not None and len(pred_box) == 4 and None not in pred_box:  # null: a non-finite box, nothing to draw
            x1, y1, x2, y2 = (float(v) * scale for v in pred_box if v is not None)
            if x2 > x1 and y2 > y1:
                draw = ImageDraw.Draw(img)
                draw.rectangle([x1 - 1, y1 - 1, x2 + 1, y2 + 1], outline=(0, 0, 0), width=1)
                draw.rectangle([x1, y1, x2, y2], outline=tuple(int(c) for c in rgb), width=2)
        # JPEG: the images are photographs (or noisy renders) and PNG makes the report ~5x larger.
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _rgb(colour: str) -> np.ndarray:
    """``#rrggbb`` as an RGB float array."""
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)


def _dashed(out: np.ndarray, edges: np.ndarray) -> None:
    """Draw ``edges`` as a dashed outline, white dashes on black, with a black halo: visible on any colour."""
    if not edges.any():
        return
    line = _dilate(edges)  # three pixels wide: one-pixel dashes smear into the image in a JPEG thumbnail
    halo = _dilate(line) & ~line
    out[halo] = 0.4 * out[halo] + 0.6 * _BLACK
    ys, xs = np.nonzero(line)
    white = (xs // DASH_PX + ys // DASH_PX) % 2 == 0  # dashes along rows and columns, whatever the outline's direction
    out[ys[white], xs[white]] = _WHITE
    out[ys[~white], xs[~white]] = _BLACK


def _dilate(mask: np.ndarray) -> np.ndarray:
    """A mask grown by one pixel (4-neighbourhood)."""
    p = np.pad(mask, 1)
    grown: np.ndarray = p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    return grown


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


def _coords(box: Sequence[float]) -> str:
    """``[6, 696, 228, 992]``: at most one decimal, none where the number is whole."""
    return "[" + ", ".join(f"{v:.1f}".removesuffix(".0") for v in box) + "]"


def box_text(box: Sequence[float | None] | None, space: str, width: int | None, height: int | None) -> str | None:
    """The stated box in pixels of the original image, naming the space the model answered in when it is not
    pixels: ``box [2, 167, 73, 238] px (model answered [6, 696, 228, 992] in norm1000)``. None without a box."""
    if box is None or len(box) != 4:
        return None
    if None in box:
        return "box not finite (" + ", ".join("nan" if v is None else f"{float(v):.1f}" for v in box) + ")"
    x1, y1, x2, y2 = (float(v) for v in box if v is not None)
    px = (x1, y1, x2, y2)
    text = f"box {_coords(px)} px"
    if space != "pixel" and width and height:
        answered = box_from_pixels(px, _space(space), width, height)
        text += f" (model answered {_coords(tuple(round(v, 3) for v in answered))} in {space})"
    elif space != "pixel":
        text += f" (the model answered in {space})"
    return text


def _space(name: str) -> BoxSpace:
    if name not in ("pixel", "norm1", "norm1000"):
        raise ValueError(f"unknown box space {name!r}")
    return name  # type: ignore[return-value]


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def anchor(prefix: str, key: Key, taken: set[str]) -> str:
    """A stable id attribute (and URL fragment) for one shown sample: ``sample-val-shapes-val-0003``."""
    base = _UNSAFE.sub("-", f"{prefix}-{key[0]}-{key[1]}").strip("-")
    out, i = base, 1
    while out in taken:  # two ids that differ only in characters a fragment cannot hold
        i += 1
        out = f"{base}-{i}"
    taken.add(out)
    return out


FOLD_CHARS = 320  # reasoning longer than this (or of more than FOLD_LINES lines) is folded after a few lines
FOLD_LINES = 5


def folds(text: str | None) -> bool:
    """Whether a chain of thought is long enough to be folded (shown clamped, opened by a click)."""
    return bool(text) and (len(text or "") > FOLD_CHARS or (text or "").count("\n") >= FOLD_LINES)


@dataclass(frozen=True)
class Look:
    """How the gallery draws a run's models: one colour each (harness/publish/colours.py, as the plots) and the
    box space each answered in (the run manifest's ``box_space``, ``pixel`` where absent)."""

    colours: Mapping[str, str] = field(default_factory=dict)
    box_spaces: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, models: Sequence[str], manifest_models: Mapping[str, Mapping[str, Any]], reference: Collection[str]) -> Look:
        return cls(model_colours(models, reference=reference),
                   {m: str((manifest_models.get(m) or {}).get("box_space") or "pixel") for m in models})

    def colour(self, model: str) -> str:
        return self.colours.get(model) or model_colours([model])[model]


def build_entries(
    picks: Mapping[str, Sequence[Key] | Mapping[Key, str]],
    index: Mapping[Key, Mapping[str, Mapping[str, Any]]],
    models: Sequence[str],
    samples: Mapping[str, Mapping[str, Sample]] | None,
    thumbs: Thumbnailer | None = None,
    conventions: Conventions | None = None,
    look: Look | None = None,
    anchor_prefix: str = "sample",
    anchors: set[str] | None = None,
) -> list[dict[str, Any]]:
    """Template-ready gallery sections: one per category, each with its samples' panels.

    ``picks`` maps a category to its keys, or to ``{key: why it was picked}`` as ``select`` gives them.
    Everything here is plain data for the template, which escapes every string: expressions,
    reasoning and errors come from datasets and models and are never trusted as markup.
    """
    thumbs = thumbs or Thumbnailer()
    look = look or Look(model_colours(models))
    anchors = set() if anchors is None else anchors
    cache: dict[tuple[Key, str], str | None] = {}
    sections = []
    for category, keys in picks.items():
        why = keys if isinstance(keys, Mapping) else {}
        items = []
        for key in keys:
            split, sid = key
            by_model = index.get(key, {})
            sample = (samples or {}).get(split, {}).get(sid)
            first = next(iter(by_model.values()), {})
            item: dict[str, Any] = {
                "split": split,
                "id": sid,
                "anchor": anchor(anchor_prefix, key, anchors),
                "why": why.get(key, ""),
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
                colour = look.colour(model)
                if sample is not None and (key, model) not in cache:
                    cache[(key, model)] = thumbs.overlay(sample, shown_mask(pred, sample, conventions or Conventions()),
                                                         pred.get("box"), colour)
                item["panels"].append(
                    {
                        "model": model,
                        "colour": colour,
                        "iou": _percent(sample_iou(rec)),
                        "image": cache.get((key, model)),
                        "box": box_text(pred.get("box"), look.box_spaces.get(model, "pixel"),
                                        sample.gt.width if sample else None, sample.gt.height if sample else None),
                        "reasoning": pred.get("reasoning"),
                        "fold": folds(pred.get("reasoning")),
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
