"""Scenes of the synthetic ``shapes`` suite: a few solid shapes on a noisy light background.

Every shape is rasterised once, into its own binary mask, with the same ``ImageDraw`` call
that paints it; the image is then composed from those masks. So a shape's ground truth is
exactly the pixels it painted that no later shape covered: there is no anti-aliasing, no
resampling and no second rendering that could disagree with the PNG by a pixel.

Occlusion is allowed but bounded (each shape keeps most of its area), so a classical
detector is sometimes wrong (a clipped circle no longer looks round, two touching shapes
of one colour merge) while every referent stays visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 90, 220),
    "yellow": (240, 200, 20),
    "purple": (140, 70, 180),
    "orange": (255, 127, 14),
}
KINDS: tuple[str, ...] = ("circle", "square", "rectangle", "triangle")

MIN_SHAPES, MAX_SHAPES = 3, 6
MIN_VISIBLE_FRACTION = 0.5  # an occluded shape keeps at least this share of its own pixels
MIN_VISIBLE_PIXELS = 150
OVERLAP_PROBABILITY = 0.55  # share of shapes placed against an earlier one rather than clear of all
SAME_COLOUR_CONTACT = 0.35  # share of overlapping shapes allowed to touch one of their own colour (they merge)
TWIN_PROBABILITY = 0.35  # share of scenes with two shapes of one colour and kind
NOISE = 5  # background noise amplitude per channel; shapes are solid


@dataclass(frozen=True)
class Shape:
    """Drawing instructions of one shape: integer geometry, so rendering is reproducible."""

    kind: str
    colour: str
    points: tuple[int, ...]  # ellipse/rectangle: (x0, y0, x1, y1); triangle: (x0, y0, x1, y1, x2, y2)

    def bbox(self) -> tuple[int, int, int, int]:
        xs, ys = self.points[0::2], self.points[1::2]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class SceneObject:
    """A shape as it ends up in the image: its visible pixels and what they measure."""

    index: int  # drawing order (later shapes are on top)
    kind: str
    colour: str
    shape: Shape
    mask: np.ndarray  # (h, w) bool, visible pixels only
    full_area: int
    area: int
    cx: float
    cy: float


@dataclass
class Scene:
    """An RGB image (h, w, 3 uint8) and its objects in drawing order."""

    width: int
    height: int
    image: np.ndarray
    objects: list[SceneObject]


def render_mask(shape: Shape, width: int, height: int) -> np.ndarray:
    """Rasterise one shape into a bool mask; the image is painted from exactly this mask."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if shape.kind == "circle":
        draw.ellipse(shape.points, fill=255)
    elif shape.kind in ("square", "rectangle"):
        draw.rectangle(shape.points, fill=255)
    elif shape.kind == "triangle":
        p = shape.points
        draw.polygon([(p[0], p[1]), (p[2], p[3]), (p[4], p[5])], fill=255)
    else:
        raise ValueError(f"unknown shape kind {shape.kind!r}")
    return np.asarray(canvas) > 0


def _random_shape(rng: np.random.Generator, kind: str, colour: str, width: int, height: int, radius: int,
                  near: Shape | None = None) -> Shape:
    """A shape of about ``radius`` half-extent placed fully inside the image (2 px margin).

    With ``near``, its centre is drawn close enough to that shape's for the two to overlap.
    """
    if kind == "rectangle":
        long_side = int(radius * rng.uniform(1.25, 1.5))
        short_side = max(6, int(long_side / rng.uniform(1.8, 2.5)))
        hx, hy = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
    else:
        hx = hy = radius
    cx = int(rng.integers(hx + 2, width - hx - 2))
    cy = int(rng.integers(hy + 2, height - hy - 2))
    if near is not None:
        x0, y0, x1, y1 = near.bbox()
        angle, reach = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.0) * (radius + max(x1 - x0, y1 - y0) / 2)
        cx = int(min(max((x0 + x1) / 2 + reach * np.cos(angle), hx + 2), width - hx - 3))
        cy = int(min(max((y0 + y1) / 2 + reach * np.sin(angle), hy + 2), height - hy - 3))
    if kind == "triangle":
        apex = int(rng.integers(4))  # which way it points: up, down, left, right
        if apex == 0:
            pts = (cx, cy - hy, cx + hx, cy + hy, cx - hx, cy + hy)
        elif apex == 1:
            pts = (cx, cy + hy, cx - hx, cy - hy, cx + hx, cy - hy)
        elif apex == 2:
            pts = (cx - hx, cy, cx + hx, cy - hy, cx + hx, cy + hy)
        else:
            pts = (cx + hx, cy, cx - hx, cy + hy, cx - hx, cy - hy)
        return Shape(kind, colour, pts)
    return Shape(kind, colour, (cx - hx, cy - hy, cx + hx, cy + hy))


def _boxes_clear(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int = 4) -> bool:
    return a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1]


def _touches_own_colour(shape: Shape, mask: np.ndarray, shapes: list[Shape], full: list[np.ndarray]) -> bool:
    """Whether ``mask`` overlaps or borders (2 px) an earlier shape of its colour: they would read as one."""
    same = [f for s, f in zip(shapes, full, strict=True) if s.colour == shape.colour and not _boxes_clear(shape.bbox(), s.bbox())]
    if not same:
        return False
    x0, y0, x1, y1 = shape.bbox()
    crop = (slice(max(0, y0 - 3), y1 + 4), slice(max(0, x0 - 3), x1 + 4))
    grown = ndimage.binary_dilation(mask[crop], iterations=2)
    return any(bool((grown & f[crop]).any()) for f in same)


def _pick_specs(rng: np.random.Generator, count: int, scale: int) -> list[tuple[str, str, int]]:
    """(kind, colour, radius) of each shape; sometimes a twin pair for "the larger of the two"."""
    colours, kinds = list(PALETTE), list(KINDS)
    lo, hi = max(8, int(scale * 0.06)), max(12, int(scale * 0.17))
    specs = [(kinds[rng.integers(len(kinds))], colours[rng.integers(len(colours))], int(rng.integers(lo, hi + 1)))
             for _ in range(count)]
    if count >= 2 and rng.random() < TWIN_PROBABILITY:
        i, j = (int(v) for v in rng.choice(count, size=2, replace=False))
        small = int(rng.integers(lo, max(lo + 1, int(hi / 1.4))))
        specs[j] = (specs[i][0], specs[i][1], small)
        specs[i] = (specs[i][0], specs[i][1], max(specs[i][2], int(small * rng.uniform(1.35, 1.8))))
    return specs


def _place(rng: np.random.Generator, width: int, height: int) -> tuple[list[Shape], list[np.ndarray], list[np.ndarray]]:
    """Shapes with their full and visible masks, placed by rejection sampling."""
    count = int(rng.integers(MIN_SHAPES, MAX_SHAPES + 1))
    specs = _pick_specs(rng, count, min(width, height))
    full: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    shapes: list[Shape] = []
    for kind, colour, radius in specs:
        overlap_ok = rng.random() < OVERLAP_PROBABILITY
        merge_ok = rng.random() < SAME_COLOUR_CONTACT
        for _ in range(60):
            near = shapes[int(rng.integers(len(shapes)))] if overlap_ok and shapes else None
            shape = _random_shape(rng, kind, colour, width, height, radius, near)
            if not overlap_ok and not all(_boxes_clear(shape.bbox(), s.bbox()) for s in shapes):
                continue
            mask = render_mask(shape, width, height)
            if not merge_ok and _touches_own_colour(shape, mask, shapes, full):
                continue
            trimmed = [v & ~mask for v in visible]
            needed = (max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * f.sum()) for f in full)
            if all(t.sum() >= n for t, n in zip(trimmed, needed, strict=True)):
                visible = [*trimmed, mask]
                full.append(mask)
                shapes.append(shape)
                break
    return shapes, full, visible


def generate_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """Draw a scene from ``rng``; the same generator state always gives the same scene.

    Shapes are placed by rejection: most keep clear of earlier ones, some are placed against
    an earlier one, as long as no earlier shape loses more than ``1 - MIN_VISIBLE_FRACTION``
    of its pixels. A shape that finds no place is left out; a scene left with fewer than
    ``MIN_SHAPES`` is drawn again (from the same generator, so still deterministic).
    """
    for _ in range(20):
        shapes, full, visible = _place(rng, width, height)
        if len(shapes) >= MIN_SHAPES:
            break

    tone = rng.integers(228, 246, size=3, dtype=np.int16)
    noise = rng.integers(-NOISE, NOISE + 1, size=(height, width, 3), dtype=np.int16)
    image = (tone + noise).astype(np.uint8)  # 223..250: no clipping needed
    objects: list[SceneObject] = []
    for i, (shape, f, v) in enumerate(zip(shapes, full, visible, strict=True)):
        image[f] = PALETTE[shape.colour]
        x0, y0, _, _ = shape.bbox()
        ys, xs = np.nonzero(v[y0:, x0:])  # a shape paints nothing above or left of its box
        objects.append(SceneObject(i, shape.kind, shape.colour, shape, v, int(f.sum()), len(xs),
                                   float(xs.mean() + x0), float(ys.mean() + y0)))
    return Scene(width, height, image, objects)
