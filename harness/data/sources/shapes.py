"""The built-in ``shapes`` suite: synthetic referring expressions over generated scenes.

It needs no download, so the whole harness (sources, adapters, scoring, reports) can be
exercised anywhere. Scenes come from ``shapes_scene``; this module writes their
expressions and serves them as Samples.

Every expression is checked against an explicit resolver (``resolve``) whose semantics are
the suite's definition: size is visible pixel area, left/right/above/below compare mask
centroids. An expression is kept only if it picks exactly one object (or none, for the
no-target ones) and still does when positions move by ``POSITION_MARGIN`` pixels or sizes
by ``SIZE_MARGIN``: a referent that wins by a pixel would be ambiguous to a human.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harness import masks
from harness.data.conventions import Conventions
from harness.data.sources import Source, SourceError
from harness.data.sources.shapes_scene import KINDS, PALETTE, Scene, SceneObject, generate_scene
from harness.types import GroundTruth, Sample

GENERATOR_VERSION = 1  # bump when scenes or expressions change: it is part of the cache fingerprint
POSITION_MARGIN = 10.0  # pixels between centroids for a spatial relation to count as clear
SIZE_MARGIN = 1.25  # area ratio for "larger"/"smallest" to count as clear
ABSENT_KINDS = ("star", "heart", "hexagon", "cross")
KIND_WEIGHTS = {"attribute": 0.28, "spatial": 0.36, "comparative": 0.28, "no_target": 0.08}
DEFAULTS: dict[str, Any] = {"seed": 0, "width": 320, "height": 240, "images": {"val": 40, "test": 60}, "expressions_per_image": 4}

EXTREMES = {"leftmost": ("cx", 1), "rightmost": ("cx", -1), "topmost": ("cy", 1), "bottommost": ("cy", -1)}
RELATIONS = {"left of": ("cx", 1), "right of": ("cx", -1), "above": ("cy", 1), "below": ("cy", -1)}


@dataclass(frozen=True)
class Desc:
    """A noun phrase: optional colour, optional kind (None reads "shape")."""

    colour: str | None = None
    kind: str | None = None

    def matches(self, obj: SceneObject) -> bool:
        return (self.colour is None or obj.colour == self.colour) and (self.kind is None or obj.kind == self.kind)

    def text(self, plural: bool = False) -> str:
        noun = (self.kind or "shape") + ("s" if plural else "")
        return f"{self.colour} {noun}" if self.colour else noun


@dataclass(frozen=True)
class Query:
    """What an expression means. ``op``: only | extreme | relation | superlative | of_two.

    ``word`` is the extreme (leftmost...), the relation (left of...), or largest/smallest
    (superlative, of_two); ``anchor`` is the object a relation is relative to.
    """

    op: str
    desc: Desc
    word: str = ""
    anchor: Desc | None = None


@dataclass(frozen=True)
class Expression:
    text: str
    kind: str  # attribute | spatial | comparative | no_target
    query: Query
    target: int | None  # index into scene.objects; None for no-target


def resolve(query: Query, objects: list[SceneObject], tolerance: int = 0) -> list[int]:
    """Indices of the objects ``query`` refers to, under the suite's semantics.

    ``tolerance`` +1 loosens every comparison by the margins (a near-winner also counts),
    -1 tightens it (a relation must hold by the margin); 0 is the plain reading. The
    generator keeps an expression only if all three readings agree on one object.
    """
    cands = [o for o in objects if query.desc.matches(o)]
    if query.op == "only":
        return [o.index for o in cands]
    if query.op == "relation":
        assert query.anchor is not None
        anchors = [o for o in objects if query.anchor.matches(o)]
        if len(anchors) != 1:
            return []
        attr, sign = RELATIONS[query.word]
        ref = getattr(anchors[0], attr)
        return [o.index for o in cands if o is not anchors[0] and sign * (ref - getattr(o, attr)) > -tolerance * POSITION_MARGIN]
    if query.op == "of_two" and len(cands) != 2:
        return []
    if not cands:
        return []
    if query.op == "extreme":
        attr, sign = EXTREMES[query.word]
        best = min(sign * getattr(o, attr) for o in cands)
        return [o.index for o in cands if sign * getattr(o, attr) <= best + tolerance * POSITION_MARGIN]
    if query.op in ("superlative", "of_two"):
        factor = SIZE_MARGIN**tolerance
        if query.word == "largest":
            top = max(o.area for o in cands)
            return [o.index for o in cands if o.area * factor >= top]
        low = min(o.area for o in cands)
        return [o.index for o in cands if o.area <= low * factor]
    raise ValueError(f"unknown query op {query.op!r}")


def is_unambiguous(query: Query, objects: list[SceneObject], target: int | None) -> bool:
    """True when every reading of ``query`` (plain, loose, tight) picks exactly ``target``."""
    want = [] if target is None else [target]
    readings = (0, 1, -1) if query.op == "relation" else (0, 1)
    return all(resolve(query, objects, t) == want for t in readings)


def _descs(objects: list[SceneObject]) -> list[Desc]:
    colours = sorted({o.colour for o in objects})
    kinds = sorted({o.kind for o in objects})
    return [Desc(c, k) for c in colours for k in kinds] + [Desc(c) for c in colours] + [Desc(None, k) for k in kinds] + [Desc()]


def _candidates(scene: Scene) -> dict[str, list[Expression]]:
    """Every unambiguous expression of the scene, by kind, in a deterministic order."""
    objs = scene.objects
    out: dict[str, list[Expression]] = {k: [] for k in KIND_WEIGHTS}

    def add(kind: str, text: str, query: Query) -> None:
        hits = resolve(query, objs)
        if len(hits) == 1 and is_unambiguous(query, objs, hits[0]):
            out[kind].append(Expression(text, kind, query, hits[0]))

    descs = _descs(objs)
    for d in descs:
        count = sum(d.matches(o) for o in objs)
        if d.colour or d.kind:
            add("attribute", f"the {d.text()}", Query("only", d))
        if count >= 2:
            for word in EXTREMES:
                add("spatial", f"the {word} {d.text()}", Query("extreme", d, word))
            for word, adj in (("largest", "largest"), ("largest", "biggest"), ("smallest", "smallest")):
                add("comparative", f"the {adj} {d.text()}", Query("superlative", d, word))
        if count == 2:
            for word, adj in (("largest", "larger"), ("largest", "bigger"), ("smallest", "smaller")):
                add("comparative", f"the {adj} of the two {d.text(plural=True)}", Query("of_two", d, word))
    anchors = [d for d in descs if d.colour and d.kind and sum(d.matches(o) for o in objs) == 1]
    for a in anchors:
        for d in descs:
            if sum(d.matches(o) and not a.matches(o) for o in objs) < 2:
                continue  # a relation that picks the only candidate says nothing
            for word in RELATIONS:
                add("spatial", f"the {d.text()} {word} the {a.text()}", Query("relation", d, word, a))

    present = {(o.colour, o.kind) for o in objs}
    for c in PALETTE:
        for k in KINDS:
            if (c, k) not in present:
                out["no_target"].append(Expression(f"the {c} {k}", "no_target", Query("only", Desc(c, k)), None))
        for k in ABSENT_KINDS:
            out["no_target"].append(Expression(f"the {c} {k}", "no_target", Query("only", Desc(c, k)), None))
    return out


def expressions_for(scene: Scene, rng: np.random.Generator, n: int) -> list[Expression]:
    """Up to ``n`` distinct expressions of ``scene``, mixing kinds per ``KIND_WEIGHTS``.

    A kind with nothing left gives way to the others, so every image gets ``n`` expressions
    as long as the scene has that many.
    """
    pools = _candidates(scene)
    chosen: list[Expression] = []
    used: set[str] = set()
    names = list(KIND_WEIGHTS)
    while len(chosen) < n:
        live = [k for k in names if any(e.text not in used for e in pools[k])]
        if not live:
            break
        weights = np.array([KIND_WEIGHTS[k] for k in live])
        kind = live[int(rng.choice(len(live), p=weights / weights.sum()))]
        options = [e for e in pools[kind] if e.text not in used]
        pick = options[int(rng.integers(len(options)))]
        chosen.append(pick)
        used.add(pick.text)
    return chosen


def _split_seed(seed: int, split: str) -> int:
    """A stable per-split seed (zlib.crc32, not hash(), which is salted per process)."""
    return zlib.crc32(f"shapes:{seed}:{split}".encode())


class ShapesSource(Source):
    """Deterministic synthetic referring segmentation: PNGs in the cache, ground truth in memory."""

    def __init__(self, params: dict[str, Any], conventions: Conventions, data_root: Path | None, cache_dir: Path) -> None:
        super().__init__(params, conventions, data_root, cache_dir)
        self.config = self._validated(self.params)
        self._cache: dict[str, list[Sample]] = {}

    @staticmethod
    def _validated(params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(DEFAULTS) - {"format"})
        if unknown:
            raise SourceError(f"shapes: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
        cfg = {**DEFAULTS, **{k: v for k, v in params.items() if k != "format"}}
        images = cfg["images"]
        if not isinstance(images, dict) or not all(isinstance(k, str) for k in images):
            raise SourceError(f"shapes: 'images' must map split names to image counts, got {images!r}")
        cfg["images"] = {**DEFAULTS["images"], **images}
        for key, low in (("seed", 0), ("width", 64), ("height", 64), ("expressions_per_image", 1)):
            if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < low:
                raise SourceError(f"shapes: '{key}' must be an integer >= {low}, got {cfg[key]!r}")
        for split, count in cfg["images"].items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise SourceError(f"shapes: images[{split!r}] must be a non-negative integer, got {count!r}")
        return cfg

    @property
    def splits(self) -> list[str]:
        return list(self.config["images"])

    @property
    def fingerprint(self) -> str:
        """Names the image folder from what decides the pixels (seed, size, generator version).

        Different parameters never share or clobber PNGs, while changing only how many images
        or expressions a split has reuses the images already written.
        """
        keys = ("seed", "width", "height")
        blob = json.dumps({**{k: self.config[k] for k in keys}, "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _check_split(self, split: str) -> None:
        if split not in self.config["images"]:
            raise SourceError(f"shapes has no split {split!r}; known: {', '.join(self.splits)}")

    def data_digest(self, split: str) -> str:
        """The samples are a function of the generator and its parameters for this split alone."""
        self._check_split(split)
        keys = ("seed", "width", "height", "expressions_per_image")
        blob = json.dumps({**{k: self.config[k] for k in keys}, "images": self.config["images"][split], "split": split,
                           "version": GENERATOR_VERSION}, sort_keys=True)
        return f"shapes:{hashlib.sha256(blob.encode()).hexdigest()[:32]}"

    def image_path(self, split: str, index: int) -> Path:
        return Path(self.cache_dir) / "shapes" / self.fingerprint / split / f"{index:04d}.png"

    def scene(self, split: str, index: int) -> tuple[Scene, list[Expression]]:
        """The scene and expressions of one image, regenerated from its seed alone."""
        self._check_split(split)
        rng = np.random.default_rng([self.config["seed"], _split_seed(self.config["seed"], split), index])
        scene = generate_scene(rng, self.config["width"], self.config["height"])
        return scene, expressions_for(scene, rng, self.config["expressions_per_image"])

    def samples(self, split: str) -> list[Sample]:
        self._check_split(split)
        if split not in self._cache:
            out: list[Sample] = []
            for index in range(self.config["images"][split]):
                scene, exprs = self.scene(split, index)
                path = self.image_path(split, index)
                if not path.is_file():
                    _write_png(scene.image, path)
                h, w = scene.height, scene.width
                for j, expr in enumerate(exprs):
                    rle = masks.empty(h, w) if expr.target is None else masks.encode(scene.objects[expr.target].mask)
                    out.append(Sample(
                        id=f"shapes/{split}/{index:04d}/{j}",
                        image=str(path),
                        expression=expr.text,
                        gt=GroundTruth(mask=rle, box=masks.mask_box(rle)),
                        dataset="shapes",
                        split=split,
                        no_target=expr.target is None,
                        meta={"kind": expr.kind, "image_index": index},
                    ))
            self._cache[split] = out
        return list(self._cache[split])


def _write_png(image: np.ndarray, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(image).save(fh, format="PNG", compress_level=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
